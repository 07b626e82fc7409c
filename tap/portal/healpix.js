// HEALPix (nested scheme) and the all-sky projections the sky view draws with: plain math, no WebGL, no network.
// Angles in radians unless a name says degrees. Longitudes grow to the left on the sky, as astronomers draw it.

const HALF_PI = Math.PI / 2;

/** The nested HEALPix index of (ra, dec) in degrees at `order` (<= 13: indexes stay within 31 bits). */
export function ang2pixNest(order, raDeg, decDeg) {
  const nside = 1 << order;
  const z = Math.sin((decDeg * Math.PI) / 180);
  const za = Math.abs(z);
  let tt = ((((raDeg % 360) + 360) % 360) / 90); // in [0, 4)
  if (tt >= 4) tt = 0;
  let face, ix, iy;
  if (za <= 2 / 3) {
    const t1 = nside * (0.5 + tt);
    const t2 = nside * z * 0.75;
    const jp = Math.floor(t1 - t2);
    const jm = Math.floor(t1 + t2);
    const ifp = Math.floor(jp / nside);
    const ifm = Math.floor(jm / nside);
    face = ifp === ifm ? (ifp | 4) : ifp < ifm ? ifp : ifm + 8;
    ix = jm & (nside - 1);
    iy = nside - (jp & (nside - 1)) - 1;
  } else {
    const ntt = Math.min(3, Math.floor(tt));
    const tp = tt - ntt;
    const tmp = nside * Math.sqrt(3 * (1 - za));
    const jp = Math.min(Math.floor(tp * tmp), nside - 1);
    const jm = Math.min(Math.floor((1 - tp) * tmp), nside - 1);
    if (z >= 0) { face = ntt; ix = nside - jm - 1; iy = nside - jp - 1; }
    else { face = ntt + 8; ix = jp; iy = jm; }
  }
  return face * nside * nside + spread(ix) + 2 * spread(iy);
}

function spread(v) {
  let out = 0;
  for (let bit = 0; v >> bit; bit++) if ((v >> bit) & 1) out += 2 ** (2 * bit);
  return out;
}

/** Angular distance in degrees between two positions in degrees. */
export function distanceDeg(ra1, dec1, ra2, dec2) {
  const r = Math.PI / 180;
  const s = Math.sin(((dec2 - dec1) * r) / 2) ** 2
    + Math.cos(dec1 * r) * Math.cos(dec2 * r) * Math.sin(((ra2 - ra1) * r) / 2) ** 2;
  return (2 * Math.asin(Math.min(1, Math.sqrt(s)))) / r;
}

// Each projection maps (lambda, phi) -> [x, y] (lambda in [-pi, pi] measured from the centre, positive to the east,
// drawn to the left) and back; `inverse` answers null outside the map.
export const PROJECTIONS = {
  "Hammer-Aitoff": {
    extent: [2 * Math.SQRT2, Math.SQRT2],
    forward(l, p) {
      const z = Math.sqrt(1 + Math.cos(p) * Math.cos(l / 2));
      return [(2 * Math.SQRT2 * Math.cos(p) * Math.sin(l / 2)) / z, (Math.SQRT2 * Math.sin(p)) / z];
    },
    inverse(x, y) {
      if ((x / (2 * Math.SQRT2)) ** 2 + (y / Math.SQRT2) ** 2 > 1) return null;
      const z = Math.sqrt(1 - (x / 4) ** 2 - (y / 2) ** 2);
      return [2 * Math.atan2(z * x, 2 * (2 * z * z - 1)), Math.asin(Math.max(-1, Math.min(1, z * y)))];
    },
  },
  Mollweide: {
    extent: [2 * Math.SQRT2, Math.SQRT2],
    forward(l, p) {
      let t = p;
      if (Math.abs(p) < HALF_PI - 1e-9) {
        for (let i = 0; i < 30; i++) {
          const d = (2 * t + Math.sin(2 * t) - Math.PI * Math.sin(p)) / (2 + 2 * Math.cos(2 * t));
          t -= d;
          if (Math.abs(d) < 1e-10) break;
        }
      }
      return [((2 * Math.SQRT2) / Math.PI) * l * Math.cos(t), Math.SQRT2 * Math.sin(t)];
    },
    inverse(x, y) {
      if (Math.abs(y) > Math.SQRT2) return null;
      const t = Math.asin(y / Math.SQRT2);
      const l = (Math.PI * x) / (2 * Math.SQRT2 * Math.cos(t));
      if (Math.abs(l) > Math.PI) return null;
      return [l, Math.asin(Math.max(-1, Math.min(1, (2 * t + Math.sin(2 * t)) / Math.PI)))];
    },
  },
  HEALPix: {
    extent: [Math.PI, HALF_PI],
    forward(l, p) {
      const z = Math.sin(p);
      if (Math.abs(z) <= 2 / 3) return [l, ((3 * Math.PI) / 8) * z];
      const s = Math.sqrt(3 * (1 - Math.abs(z)));
      const lc = -0.75 * Math.PI + HALF_PI * Math.min(3, Math.floor((l + Math.PI) / HALF_PI));
      return [lc + (l - lc) * s, Math.sign(z) * (Math.PI / 4) * (2 - s)];
    },
    inverse(x, y) {
      if (Math.abs(x) > Math.PI || Math.abs(y) > HALF_PI) return null;
      if (Math.abs(y) <= Math.PI / 4) return [x, Math.asin((8 * y) / (3 * Math.PI))];
      const s = 2 - (4 * Math.abs(y)) / Math.PI;
      const lc = -0.75 * Math.PI + HALF_PI * Math.min(3, Math.floor((x + Math.PI) / HALF_PI));
      if (Math.abs(x - lc) > (Math.PI / 4) * s + 1e-12) return null;
      const l = s > 1e-9 ? lc + (x - lc) / s : lc;
      return [l, Math.sign(y) * Math.asin(Math.min(1, 1 - (s * s) / 3))];
    },
  },
};
