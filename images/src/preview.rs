//! DataLink's `#preview`: an image as a small 8-bit grey PNG a browser shows. The pixels are averaged in square
//! blocks down to at most `max_side` on a side (NaN, Inf and BLANK pixels left out of each average), then stretched:
//! the 0.5th and 99.5th percentiles of the averaged values become black and white, with an asinh curve between
//! (`asinh(10 t) / asinh(10)`: faint structure visible, bright stars not saturated at once). FITS row 1 is the
//! bottom of the picture, as image viewers show it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use crate::{Image, ImageError};

/// Where a percentile falls in `n` sorted values: the nearest rank (numpy's `method="nearest"` up to ties).
fn rank(n: usize, p: f64) -> usize {
    ((n - 1) as f64 * p).round() as usize
}

/// The stretch of one averaged value to a grey level.
fn grey(v: f64, lo: f64, hi: f64) -> u8 {
    if !v.is_finite() {
        return 0;
    }
    let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    ((10.0 * t).asinh() / 10f64.asinh() * 255.0).round() as u8
}

impl Image {
    /// The preview as PNG bytes, at most `max_side` pixels wide and high.
    pub fn preview_png(&self, max_side: u64) -> Result<Vec<u8>, ImageError> {
        let io = |e| ImageError::Io(self.path.clone(), e);
        let hdu = &self.hdu;
        let (n1, n2) = (hdu.naxis1, hdu.naxis2);
        let factor = n1.max(n2).div_ceil(max_side.max(1)).max(1);
        let (w, h) = (n1.div_ceil(factor) as usize, n2.div_ceil(factor) as usize);
        let scale = hdu.header.f64("BSCALE").unwrap_or(1.0);
        let zero = hdu.header.f64("BZERO").unwrap_or(0.0);
        let blank = (hdu.bitpix > 0).then(|| hdu.header.i64("BLANK")).flatten();
        let bpp = hdu.bytes_per_pixel() as usize;
        let value = |b: &[u8]| -> f64 {
            let raw = match hdu.bitpix {
                8 => b[0] as i64,
                16 => i16::from_be_bytes([b[0], b[1]]) as i64,
                32 => i32::from_be_bytes(b.try_into().expect("4 bytes")) as i64,
                64 => i64::from_be_bytes(b.try_into().expect("8 bytes")),
                -32 => return f32::from_be_bytes(b.try_into().expect("4 bytes")) as f64 * scale + zero,
                _ => return f64::from_be_bytes(b.try_into().expect("8 bytes")) * scale + zero,
            };
            if blank == Some(raw) {
                f64::NAN
            } else {
                raw as f64 * scale + zero
            }
        };
        let mut sums = vec![0f64; w * h];
        let mut counts = vec![0u32; w * h];
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(hdu.data_offset)).map_err(io)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut row = vec![0u8; n1 as usize * bpp];
        for y in 0..n2 as usize {
            reader.read_exact(&mut row).map_err(io)?;
            let out_row = (y / factor as usize) * w;
            for (x, b) in row.chunks_exact(bpp).enumerate() {
                let v = value(b);
                if v.is_finite() {
                    let k = out_row + x / factor as usize;
                    sums[k] += v;
                    counts[k] += 1;
                }
            }
        }
        let means: Vec<f64> = sums
            .iter()
            .zip(&counts)
            .map(|(&s, &c)| if c > 0 { s / c as f64 } else { f64::NAN })
            .collect();
        let mut finite: Vec<f64> = means.iter().copied().filter(|v| v.is_finite()).collect();
        finite.sort_by(f64::total_cmp);
        let (lo, hi) = match finite.len() {
            0 => (0.0, 1.0),
            n => (finite[rank(n, 0.005)], finite[rank(n, 0.995)]),
        };
        let hi = if hi > lo { hi } else { lo + 1.0 };
        // Top row of the picture = the last FITS row.
        let mut pixels = Vec::with_capacity(w * h);
        for y in (0..h).rev() {
            pixels.extend(means[y * w..(y + 1) * w].iter().map(|&v| grey(v, lo, hi)));
        }
        let mut png = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png, w as u32, h as u32);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder
                .write_header()
                .map_err(|e| ImageError::Unsupported(format!("writing the preview: {e}")))?;
            writer
                .write_image_data(&pixels)
                .map_err(|e| ImageError::Unsupported(format!("writing the preview: {e}")))?;
        }
        Ok(png)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stretch_spans_black_to_white() {
        assert_eq!(grey(0.0, 0.0, 1.0), 0);
        assert_eq!(grey(1.0, 0.0, 1.0), 255);
        assert_eq!(grey(5.0, 0.0, 1.0), 255);
        assert_eq!(grey(f64::NAN, 0.0, 1.0), 0);
        // asinh lifts the faint end: a tenth of the range is already asinh(1) / asinh(10) = 0.29 of the way to white.
        assert_eq!(grey(0.1, 0.0, 1.0), 75);
        assert_eq!(rank(1, 0.995), 0);
        assert_eq!(rank(201, 0.005), 1);
    }
}
