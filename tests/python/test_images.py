"""Images as the archive will read them (issue 29, its first part), against astropy as the oracle: images written by
astropy (TAN, SIN, TAN with SIP distortions, across RA 0, at a pole, in an IMAGE extension, 16-bit with BZERO, a
3-D cube of one plane), their ObsCore records from `skyshard images inspect` (the centre where astropy.wcs puts it,
every footprint vertex on the image's outer edge by astropy's inverse WCS, times, band, names), and cutouts from
`skyshard images cutout` whose every pixel astropy maps back onto a whole pixel of the original with the same value,
covering every pixel whose centre is inside the shape. Bad files and shapes get a clear error and nothing written."""

import json
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skyshard_processes import SKYSHARD


def skyshard(*args):
    return subprocess.run([SKYSHARD, *map(str, args)], capture_output=True, text=True, timeout=120)


def tan_wcs(ra, dec, size=(120, 90), scale=0.001, rot=0.2, proj="TAN"):
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{proj}", f"DEC--{proj}"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [size[0] / 2 + 0.3, size[1] / 2 - 0.7]
    c, s = np.cos(np.radians(rot * 30)), np.sin(np.radians(rot * 30))
    w.wcs.cd = np.array([[-scale * c, scale * s], [scale * s, scale * c]])
    return w


def write(path, w, size=(120, 90), dtype=np.float32, extension=False, extra=None, cube=False):
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    data = (rng.normal(100, 10, size=(size[1], size[0])) * 10).astype(dtype)
    if cube:
        data = data[np.newaxis]
    header = w.to_header(relax=True)
    for k, v in (extra or {}).items():
        header[k] = v
    if extension:
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header=header)]).writeto(path, overwrite=True)
    else:
        fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)
    return path


def sip_wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [60.0, 45.0]
    w.wcs.cd = np.array([[-0.0005, 0.0], [0.0, 0.0005]])
    from astropy.wcs import Sip
    a = np.zeros((3, 3)); b = np.zeros((3, 3))
    a[2, 0] = 2e-5; a[0, 2] = -1e-5; b[1, 1] = 3e-5
    w.sip = Sip(a, b, None, None, w.wcs.crpix)
    return w


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    return {
        "tan": write(d / "tan-g.fits", tan_wcs(10, 20), extra={"FILTER": "g", "MJD-OBS": 60000.25, "EXPTIME": 30.0,
                                                              "OBJECT": "field 7", "TELESCOP": "Rubin",
                                                              "INSTRUME": "LSSTCam"}),
        "sin": write(d / "sin.fit", tan_wcs(200, -30, proj="SIN"), extra={"DATE-OBS": "2024-02-29T06:00:00",
                                                                         "FILTER": "HSC-R"}),
        "ra0": write(d / "across-ra0.fts", tan_wcs(0.02, -5, scale=0.002)),
        "pole": write(d / "pole.fits", tan_wcs(0, 89.97, scale=0.001)),
        "ext": write(d / "in-extension.fits", tan_wcs(45, 45), extension=True, extra={"OBS_ID": "named-in-header"}),
        "int16": write(d / "int16.fits", tan_wcs(300, 10), dtype=np.int16, extra={"BZERO": 32768, "BSCALE": 1}),
        "cube": write(d / "cube.fits", tan_wcs(120, 60), cube=True),
        "sip": write(d / "sip.fits", sip_wcs()),
    }


def record(path):
    out = skyshard("images", "inspect", "--collection", "deep", "--authority", "example.org", path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def astropy_image(path):
    hdul = fits.open(path)
    hdu = next(h for h in hdul if h.data is not None and h.data.ndim >= 2)
    data = hdu.data if hdu.data.ndim == 2 else hdu.data[0]
    return WCS(hdu.header, naxis=2), data, hdu.header


@pytest.mark.parametrize("name", ["tan", "sin", "ra0", "pole", "ext", "int16", "cube", "sip"])
def test_the_record_puts_the_image_where_astropy_does(images, name):
    path = images[name]
    r = record(path)
    w, data, _ = astropy_image(path)
    ny, nx = data.shape
    assert (r["s_xel1"], r["s_xel2"]) == (nx, ny)
    ra, dec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    assert abs(((r["s_ra"] - ra + 180) % 360) - 180) < 1e-7 and abs(r["s_dec"] - dec) < 1e-7, (r["s_ra"], ra)
    # The footprint is the image's outer edge (the pixels' outer corners, 4 points a side) as astropy maps it, in
    # DALI's order (counter-clockwise on the sky: the reverse of astropy's when the image is not mirrored).
    vertices = np.array(r["s_region"]).reshape(-1, 2)
    assert len(vertices) == 16
    corners = [(-0.5, -0.5), (nx - 0.5, -0.5), (nx - 0.5, ny - 0.5), (-0.5, ny - 0.5)]
    edge = [(a[0] + (b[0] - a[0]) * k / 4, a[1] + (b[1] - a[1]) * k / 4)
            for a, b in zip(corners, corners[1:] + corners[:1]) for k in range(4)]
    want = w.all_pix2world(np.array(edge), 0)
    got = {(round(ra % 360, 7) % 360, round(dec, 7)) for ra, dec in vertices}
    expected = {(round(ra % 360, 7) % 360, round(dec, 7)) for ra, dec in want}
    assert len(got & expected) >= 15, sorted(got ^ expected)[:6]
    assert r["dataproduct_type"] == "image" and r["obs_collection"] == "deep"
    assert r["obs_publisher_did"] == f"ivo://example.org/images?deep/{r['obs_id']}"
    assert r["access_format"] == "application/x-votable+xml;content=datalink"
    # The field of view holds every vertex; the resolution is the pixel scale.
    assert r["s_fov"] > 0 and r["s_resolution"] > 0


def test_names_times_and_bands_come_from_the_header(images):
    tan = record(images["tan"])
    assert tan["obs_id"] == "tan-g" and tan["target_name"] == "field 7"
    assert tan["facility_name"] == "Rubin" and tan["instrument_name"] == "LSSTCam"
    assert tan["t_min"] == 60000.25 and tan["t_max"] == pytest.approx(60000.25 + 30 / 86400, abs=1e-9)
    assert (tan["em_min"], tan["em_max"]) == (4.0e-7, 5.52e-7)
    assert tan["s_resolution"] == pytest.approx(3.6, rel=1e-3)
    sin = record(images["sin"])
    assert sin["obs_id"] == "sin" and sin["t_min"] == pytest.approx(60369.25)
    assert (sin["em_min"], sin["em_max"]) == (5.52e-7, 6.91e-7)
    assert record(images["ra0"])["obs_id"] == "across-ra0"
    assert record(images["ext"])["obs_id"] == "named-in-header"
    assert record(images["cube"])["em_min"] is None


def check_cutout(path, shape, tmp_path, inside=None):
    """Cuts `shape` out of `path`; checks every pixel against the original with astropy; returns the cutout's data
    (None for a miss)."""
    out = tmp_path / "cut.fits"
    if out.exists():
        out.unlink()
    r = skyshard("images", "cutout", path, "--shape", shape, "--out", out)
    assert r.returncode == 0, r.stderr
    if "misses" in r.stdout:
        assert not out.exists()
        return None
    w, data, header = astropy_image(path)
    with fits.open(out) as hdul:
        cut = hdul[0]
        wc = WCS(cut.header)
        ny, nx = cut.data.shape
        ys, xs = np.mgrid[0:ny, 0:nx]
        ra, dec = wc.all_pix2world(xs.ravel(), ys.ravel(), 0)
        xo, yo = w.all_world2pix(ra, dec, 0, tolerance=1e-12)
        assert np.abs(xo - np.round(xo)).max() < 1e-6 and np.abs(yo - np.round(yo)).max() < 1e-6
        xi, yi = np.round(xo).astype(int), np.round(yo).astype(int)
        assert np.array_equal(data[yi, xi], cut.data.ravel()), "the cutout's pixels differ from the original's"
        assert cut.header["BITPIX"] == header["BITPIX"]
        if inside is not None:
            # Every original pixel whose centre is inside the shape is in the cutout.
            gy, gx = np.mgrid[0:data.shape[0], 0:data.shape[1]]
            gra, gdec = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
            want = inside(gra, gdec)
            have = set(zip(xi, yi))
            missing = [(x, y) for x, y in zip(gx.ravel()[want], gy.ravel()[want]) if (x, y) not in have]
            assert not missing, missing[:5]
        return cut.data


def circle(ra, dec, r):
    def inside(a, d):
        a, d = np.radians(a), np.radians(d)
        c = np.sin(np.radians(dec)) * np.sin(d) + np.cos(np.radians(dec)) * np.cos(d) * np.cos(a - np.radians(ra))
        return np.degrees(np.arccos(np.clip(c, -1, 1))) <= r
    return f"CIRCLE {ra} {dec} {r}", inside


@pytest.mark.parametrize("name", ["tan", "sin", "ra0", "pole", "ext", "int16", "cube", "sip"])
def test_a_cutout_holds_the_originals_exact_pixels(images, name, tmp_path):
    r = record(images[name])
    shape, inside = circle(r["s_ra"], r["s_dec"], r["s_fov"] / 6)
    cut = check_cutout(images[name], shape, tmp_path, inside)
    assert cut is not None and cut.size > 0
    # Around an edge vertex: clipped to the image.
    ra, dec = r["s_region"][0], r["s_region"][1]
    shape, inside = circle(ra, dec, r["s_fov"] / 8)
    assert check_cutout(images[name], shape, tmp_path, inside) is not None


def test_polygons_ranges_and_misses(images, tmp_path):
    r = record(images["ra0"])
    ra, dec, f = r["s_ra"], r["s_dec"], r["s_fov"] / 5
    poly = f"POLYGON {ra - f} {dec - f} {ra + f} {dec - f} {ra} {dec + f}"
    assert check_cutout(images["ra0"], poly, tmp_path) is not None
    rng = f"RANGE {(ra - f) % 360} {(ra + f) % 360} {dec - f} {dec + f}"
    assert check_cutout(images["ra0"], rng, tmp_path) is not None
    # A circle around the whole image gives the whole image.
    whole = check_cutout(images["tan"], "CIRCLE 10 20 5", tmp_path)
    assert whole.shape == (90, 120)
    # Beside the image, and on the far side of the sky: a miss, nothing written.
    assert check_cutout(images["tan"], "CIRCLE 10.3 20 0.05", tmp_path) is None
    assert check_cutout(images["tan"], "CIRCLE 190 -20 1", tmp_path) is None
    assert check_cutout(images["pole"], "RANGE 0 360 -90 80", tmp_path) is None


def test_bad_files_and_shapes_are_refused_clearly(images, tmp_path):
    no_wcs = tmp_path / "no-wcs.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(no_wcs)
    nan = tmp_path / "nan.fits"
    w = tan_wcs(10, 20)
    fits.PrimaryHDU(np.zeros((90, 120), np.float32), header=w.to_header()).writeto(nan)
    raw = bytearray(nan.read_bytes())
    at = raw.index(b"CRVAL1  =")
    raw[at:at + 80] = b"CRVAL1  =                  NaN".ljust(80)
    nan.write_bytes(bytes(raw))
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(images["tan"].read_bytes()[:5000])
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file at all\n" * 200)
    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]).writeto(table)
    compressed = tmp_path / "rice.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((90, 120), np.float32), header=w.to_header(),
                                                         compression_type="RICE_1")]).writeto(compressed)
    for path, why in [(no_wcs, "no usable celestial WCS"), (nan, "CRVAL1 is not a finite number"),
                      (truncated, "not a FITS file"), (text, "not a FITS file"), (table, "no 2-D image"),
                      (compressed, "tile-compressed")]:
        out = skyshard("images", "inspect", path)
        assert out.returncode == 1 and str(path) in out.stderr and why in out.stderr, (path.name, out.stderr)
        assert out.stdout == ""
    # A header of 10,000 cards is read.
    big = tmp_path / "big-header.fits"
    h = tan_wcs(10, 20).to_header()
    for i in range(10_000):
        h.add_history(f"step {i}")
    fits.PrimaryHDU(np.zeros((90, 120), np.float32), header=h).writeto(big)
    assert record(big)["s_xel1"] == 120
    # Headers that lie (second attacker pass): each refused by name, never a crash.
    def patched(name, cards):
        path = tmp_path / name
        fits.PrimaryHDU(np.zeros((90, 120), np.float32), header=tan_wcs(10, 20).to_header()).writeto(path)
        raw = bytearray(path.read_bytes())
        for key, value in cards.items():
            at = raw.index(key.ljust(8).encode() + b"=")
            raw[at:at + 80] = f"{key.ljust(8)}= {value:>20}".ljust(80).encode()
        path.write_bytes(bytes(raw))
        return path
    for name, cards, why in [
        ("huge.fits", {"NAXIS1": str(2**62), "NAXIS2": str(2**62)}, "NAXIS1"),
        ("wide.fits", {"NAXIS1": str(2**31), "NAXIS2": str(2**31)}, "more data than the file"),
        ("axes.fits", {"NAXIS": "1000000000"}, "FITS allows 0 to 999 axes"),
        ("crpix.fits", {"CRPIX1": "1E300"}, "CRPIX1 = 1e300 is out of range"),
        ("crval.fits", {"CRVAL2": "1E300"}, "CRVAL2 = 1e300 is out of range"),
        ("ctype.fits", {"CTYPE1": "'RA--'"}, "not a longitude and a latitude axis"),
        ("decdec.fits", {"CTYPE1": "'DEC--TAN'"}, "not a longitude and a latitude axis"),
        ("singular.fits", {"CDELT1": "0.0"}, "singular"),
        ("nan-pc.fits", {"PC1_1": "NaN"}, "PC1_1 is not a finite number"),
    ]:
        out = skyshard("images", "inspect", patched(name, cards))
        assert out.returncode == 1 and name in out.stderr and why in out.stderr, (name, out.stderr[-500:])
        assert "panicked" not in out.stderr
    # A distortion that corners survive but the centre does not: refused, not a crash (fourth attacker pass).
    sip = tmp_path / "sip-centre.fits"
    h = fits.Header()
    for k, v in [("CTYPE1", "RA---SIN-SIP"), ("CTYPE2", "DEC--SIN-SIP"), ("CRPIX1", 50.5), ("CRPIX2", 50.5),
                 ("CRVAL1", 10.0), ("CRVAL2", 20.0), ("CDELT1", 1.0), ("CDELT2", 1.0), ("A_ORDER", 2),
                 ("B_ORDER", 2), ("A_0_0", 60.3), ("A_1_0", -1.0), ("A_2_0", -60.3 / 50.5**2)]:
        h[k] = v
    fits.PrimaryHDU(np.zeros((100, 100), np.float32), header=h).writeto(sip)
    out = skyshard("images", "inspect", sip)
    assert out.returncode == 1 and "panicked" not in out.stderr and "sip-centre.fits" in out.stderr, out.stderr[-500:]
    # Shapes that are not shapes.
    for shape in ["CIRCLE 10 20", "CIRCLE 10 95 1", "CIRCLE 10 20 -1", "POLYGON 1 2 3 4", "ELLIPSE 1 2 3 4 5",
                  "RANGE 10 20 5 1", "CIRCLE a b c", "RANGE -1e308 1e308 -90 90", "RANGE 1e308 -1e308 0 1"]:
        out = skyshard("images", "cutout", images["tan"], "--shape", shape, "--out", tmp_path / "x.fits")
        assert out.returncode == 1 and "error:" in out.stderr, (shape, out.stderr)
        assert not (tmp_path / "x.fits").exists()
