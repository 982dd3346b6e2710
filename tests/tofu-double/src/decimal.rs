//! Numbers as OpenTofu's `format` rounds them for `%f`, `%e` and `%g`. cty keeps a number as a
//! 512-bit float parsed from the decimal the module wrote, so `format("%.2f", 12.345)` rounds
//! that decimal, not the nearest float64 (which is just above 12.345 and would give `12.35`
//! where OpenTofu prints `12.34`). The stand-in takes the shortest decimal that names the float64
//! (the literal, for up to 15 significant digits), rounds it digit by digit, and settles exact
//! decimal ties the way the 512-bit value falls: above the tie, below it, or on it (then to even).

/// A non-negative decimal `0.d1d2d3… × 10^point`, without trailing zeros (zero has no digits).
#[derive(Clone, Debug)]
pub struct Decimal {
    digits: Vec<u8>,
    point: i32,
    value: f64,
}

impl Decimal {
    /// The shortest decimal that reads back as `x` (its absolute value).
    pub fn of(x: f64) -> Decimal {
        let x = x.abs();
        let sci = format!("{x:e}");
        let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let mut digits: Vec<u8> = mant
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        let point = exp.parse::<i32>().unwrap_or(0) + 1;
        Decimal {
            digits,
            point,
            value: x,
        }
    }

    /// The decimal exponent of the first significant digit (`1.5e3` → 3).
    pub fn exponent(&self) -> i32 {
        if self.digits.is_empty() {
            0
        } else {
            self.point - 1
        }
    }

    /// The number of significant digits.
    pub fn len(&self) -> usize {
        self.digits.len()
    }

    /// Rounded to `keep` significant digits (`keep` ≤ 0 rounds below the first digit).
    pub fn round(&self, keep: i32) -> Decimal {
        if keep >= self.digits.len() as i32 {
            return self.clone();
        }
        let cut = keep.max(0) as usize;
        let rest = if keep < 0 {
            &[][..]
        } else {
            &self.digits[cut..]
        };
        let up = match rest.first().map(|d| d.cmp(&5)) {
            _ if keep < 0 => false,
            Some(std::cmp::Ordering::Greater) => true,
            Some(std::cmp::Ordering::Equal) if rest[1..].iter().any(|d| *d != 0) => true,
            Some(std::cmp::Ordering::Equal) => self.tie_goes_up(cut),
            _ => false,
        };
        let mut digits = self.digits[..cut].to_vec();
        let mut point = self.point;
        if up {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    point += 1;
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        let point = if digits.is_empty() { 0 } else { point };
        Decimal {
            digits,
            point,
            value: self.value,
        }
    }

    /// At an exact decimal tie: up when the 512-bit value lies above the decimal, down when
    /// below, to even when it is the decimal itself.
    fn tie_goes_up(&self, cut: usize) -> bool {
        let even = cut == 0 || self.digits[cut - 1].is_multiple_of(2);
        match self.above_512_bits() {
            Some(above) => above,
            None => !even,
        }
    }

    /// Whether the 512-bit float nearest to this decimal is above it (`None`: equal, or too
    /// many digits to tell with 128-bit arithmetic).
    fn above_512_bits(&self) -> Option<bool> {
        let k = self.digits.len() as i32 - self.point;
        if k <= 0 || k > 19 || self.digits.len() > 19 {
            return None;
        }
        let n = self.digits.iter().fold(0u128, |n, d| n * 10 + *d as u128);
        let modulus = 10u128.pow(k as u32);
        // The mantissa holds `value × 2^s` with s chosen so that it has 512 bits; the part
        // below its last bit is `(n × 2^s mod 10^k) / 10^k`.
        let s = 511 - self.value.log2().floor() as i32;
        if s < 0 {
            return None;
        }
        let pow = (0..s).fold(1u128, |p, _| p * 2 % modulus);
        let r = n % modulus * pow % modulus;
        match (2 * r).cmp(&modulus) {
            std::cmp::Ordering::Equal => None,
            _ if r == 0 => None,
            o => Some(o == std::cmp::Ordering::Greater),
        }
    }

    /// The digit at decimal position `i` (0 = the first digit), zero beyond the digits.
    fn digit(&self, i: i32) -> char {
        let d = if i >= 0 {
            self.digits.get(i as usize).copied().unwrap_or(0)
        } else {
            0
        };
        (b'0' + d) as char
    }

    /// `%.{prec}f` of this decimal after rounding to `prec` fraction digits.
    pub fn fixed(&self, prec: usize) -> String {
        let r = self.round(self.point + prec as i32);
        let whole: String = if r.point <= 0 {
            "0".into()
        } else {
            (0..r.point).map(|i| r.digit(i)).collect()
        };
        let frac: String = (0..prec as i32).map(|i| r.digit(r.point + i)).collect();
        if prec == 0 {
            whole
        } else {
            format!("{whole}.{frac}")
        }
    }

    /// `%.{prec}e` of this decimal after rounding to `prec + 1` significant digits.
    pub fn scientific(&self, prec: usize) -> String {
        let r = self.round(prec as i32 + 1);
        let e = r.exponent();
        let frac: String = (1..=prec as i32).map(|i| r.digit(i)).collect();
        let dot = if prec == 0 {
            String::new()
        } else {
            format!(".{frac}")
        };
        let sign = if e < 0 { '-' } else { '+' };
        format!("{}{dot}e{sign}{:02}", r.digit(0), e.abs())
    }
}

/// Go's `%g`: `prec` significant digits (the shortest when `None`), in exponent notation when the
/// exponent is below -4 or at least the precision (6 for the shortest).
pub fn general(x: f64, prec: Option<usize>) -> String {
    let d = Decimal::of(x);
    if d.len() == 0 {
        return "0".into();
    }
    let r = match prec {
        Some(p) => d.round(p.max(1) as i32),
        None => d,
    };
    let nd = r.len().max(1) as i32;
    let mut p = prec.map(|p| p.max(1) as i32).unwrap_or(nd);
    let eprec = match prec {
        None => 6,
        Some(_) if p > nd && nd >= r.point => nd,
        Some(_) => p,
    };
    let exp = r.exponent();
    if exp < -4 || exp >= eprec {
        return r.scientific((p.min(nd) - 1) as usize);
    }
    if p > r.point {
        p = nd;
    }
    r.fixed((p - r.point).max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each expected string is what Terraform 1.11.4 printed for `format` with the same values.
    #[test]
    fn rounds_as_ctys_512_bit_numbers() {
        let f = |x: f64, p: usize| Decimal::of(x).fixed(p);
        let got = [
            f(12.345, 2),
            f(0.05, 1),
            f(1.005, 2),
            f(0.125, 2),
            f(2.675, 2),
            f(1.5, 0),
            f(0.35, 1),
            f(0.45, 1),
            f(1.0005, 3),
            f(0.1, 20),
            f(1.115, 2),
            f(0.15, 1),
            f(100.125, 2),
        ];
        let want =
            "12.34|0.1|1.00|0.12|2.67|2|0.3|0.4|1.000|0.10000000000000000000|1.12|0.2|100.12";
        assert_eq!(got.join("|"), want);
        let e = |x: f64, p: usize| Decimal::of(x).scientific(p);
        let got = [
            e(12345.0, 2),
            e(0.00125, 1),
            e(2.0005, 3),
            e(0.1, 6),
            e(1.125, 2),
        ];
        assert_eq!(
            got.join("|"),
            "1.23e+04|1.2e-03|2.001e+00|1.000000e-01|1.12e+00"
        );
        let got = [
            general(12.5, Some(2)),
            general(0.0001235, Some(3)),
            general(0.1, None),
            general(123456789.0, None),
            general(0.05, Some(1)),
        ];
        assert_eq!(got.join("|"), "12|0.000123|0.1|1.23456789e+08|0.05");
        let got = [
            f(999.995, 2),
            f(1234567.0, 1),
            f(0.0, 2),
            f(0.5, 0),
            f(2.5, 0),
            e(0.0, 3),
        ];
        assert_eq!(got.join("|"), "999.99|1234567.0|0.00|0|2|0.000e+00");
    }
}
