//! A Mollweide map of rows per chunk, for a DBA who would rather look than read: each pixel is coloured by the
//! row density (rows per square degree) of the chunk under it, on a logarithmic scale, with chunk borders drawn.

use std::collections::BTreeMap;
use std::f64::consts::{PI, SQRT_2};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use partitioner::ChunkId;
use partitioner::map::ChunkMap;

use crate::error::{LoaderError, Result, io};

/// Square degrees of a HEALPix cell at `depth`.
fn cell_area_deg2(depth: u8) -> f64 {
    41_252.961_249_419_27 / (12.0 * 4f64.powi(depth as i32))
}

/// (lon, lat) in degrees for a point of the Mollweide ellipse (x in [-2 sqrt 2, 2 sqrt 2], y in [-sqrt 2, sqrt 2]).
fn inverse_mollweide(x: f64, y: f64) -> Option<(f64, f64)> {
    let s = y / SQRT_2;
    if s.abs() > 1.0 {
        return None;
    }
    let theta = s.asin();
    let lon = PI * x / (2.0 * SQRT_2 * theta.cos());
    if lon.abs() > PI {
        return None;
    }
    let lat = ((2.0 * theta + (2.0 * theta).sin()) / PI)
        .clamp(-1.0, 1.0)
        .asin();
    Some((lon.to_degrees(), lat.to_degrees()))
}

/// A perceptually ordered ramp from dark blue through green to yellow, t in [0, 1].
fn colour(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] = [
        [48.0, 18.0, 59.0],
        [50.0, 100.0, 200.0],
        [30.0, 180.0, 140.0],
        [150.0, 220.0, 60.0],
        [250.0, 240.0, 40.0],
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mut out = [0u8; 3];
    for k in 0..3 {
        out[k] = (STOPS[i][k] * (1.0 - f) + STOPS[i + 1][k] * f).round() as u8;
    }
    out
}

/// Writes the map as a PNG of `width` x `width / 2` pixels. RA increases to the left, as on the sky.
pub fn write_sky_map(
    path: &Path,
    map: &ChunkMap,
    rows: &BTreeMap<ChunkId, u64>,
    width: u32,
) -> Result<()> {
    let height = width / 2;
    let density =
        |c: ChunkId| rows.get(&c).copied().unwrap_or(0) as f64 / cell_area_deg2(c.depth());
    let max = map
        .chunks()
        .iter()
        .map(|&c| density(c))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let min = map
        .chunks()
        .iter()
        .map(|&c| density(c))
        .filter(|d| *d > 0.0)
        .fold(max, f64::min);
    let span = (max / min).ln().max(1e-9);
    let mut chunk_at = vec![None; (width * height) as usize];
    for py in 0..height {
        for px in 0..width {
            let x = (1.0 - 2.0 * (px as f64 + 0.5) / width as f64) * 2.0 * SQRT_2;
            let y = (1.0 - 2.0 * (py as f64 + 0.5) / height as f64) * SQRT_2;
            if let Some((lon, lat)) = inverse_mollweide(x, y) {
                chunk_at[(py * width + px) as usize] =
                    map.assign(lon.rem_euclid(360.0), lat).ok().map(|(c, _)| c);
            }
        }
    }
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    for py in 0..height {
        for px in 0..width {
            let i = (py * width + px) as usize;
            let Some(c) = chunk_at[i] else { continue };
            let border = (px + 1 < width && chunk_at[i + 1].is_some_and(|o| o != c))
                || (py + 1 < height && chunk_at[i + width as usize].is_some_and(|o| o != c));
            let d = density(c);
            let rgb = if border {
                [20, 20, 20]
            } else if d <= 0.0 {
                [225, 225, 225]
            } else {
                colour((d / min).ln() / span)
            };
            pixels[i * 3..i * 3 + 3].copy_from_slice(&rgb);
        }
    }
    let file = File::create(path).map_err(io(path))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| LoaderError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&pixels).map_err(png_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mollweide_centre_and_edges() {
        let (lon, lat) = inverse_mollweide(0.0, 0.0).unwrap();
        assert!(lon.abs() < 1e-12 && lat.abs() < 1e-12);
        let (_, lat) = inverse_mollweide(0.0, SQRT_2).unwrap();
        assert!((lat - 90.0).abs() < 1e-9);
        assert!(inverse_mollweide(2.0 * SQRT_2, 1.0).is_none());
    }
}
