//! Text forms of doubles as Redis prints them.
//!
//! ```text
//! "%.17g"   17 significant digits, trailing zeros dropped,
//!           exponent form (e+XX / e-XX) when exp < -4 or exp >= 17
//! d2string  "nan" / "inf" / "-inf" / "0" / "-0", integers as "%lld",
//!           otherwise the shortest digits that round-trip, %g-style
//! ```

/// Render `v` exactly as C's `printf("%.17g", v)` does for finite values
/// (`nan`, `inf` and `-inf` for the others).
pub fn format_g17(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s.to_owned();
    }
    // 17 significant digits, correctly rounded, in scientific form.
    let sci = format!("{:.16e}", v.abs());
    let (mantissa, exp) = split_sci(&sci);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    g_style(v.is_sign_negative(), digits.trim_end_matches('0'), exp, 17)
}

/// Render `v` the way Redis' `d2string` does for sorted-set scores stored in
/// listpacks and ziplists: integers without a fraction, otherwise the
/// shortest digits that round-trip.
pub fn format_score(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Exactly representable integers are printed as integers (Redis' double2ll).
    const LIMIT: f64 = (1u64 << 52) as f64;
    if v.fract() == 0.0 && v.abs() < LIMIT {
        return format!("{}", v as i64);
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = split_sci(&sci);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    g_style(v.is_sign_negative(), digits.trim_end_matches('0'), exp, 17)
}

fn non_finite(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("nan")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Split Rust's `d.ddde±x` into mantissa and decimal exponent.
fn split_sci(s: &str) -> (&str, i32) {
    match s.split_once('e') {
        Some((m, e)) => (m, e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

/// Lay out significant `digits` (first digit has weight 10^exp) like `%g`
/// with the given precision, trailing zeros already removed.
fn g_style(negative: bool, digits: &str, exp: i32, precision: i32) -> String {
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exp < -4 || exp >= precision {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        ));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            let (int, frac) = digits.split_at(int_len);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_matches_printf() {
        // Expected strings are what glibc prints for "%.17g".
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (0.1, "0.10000000000000001"),
            (-2.5e-5, "-2.5000000000000001e-05"),
            (0.0001, "0.0001"),
            (123456789.0, "123456789"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (1e300, "1.0000000000000001e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "4.9406564584124654e-324"),
        ];
        for &(v, want) in cases {
            assert_eq!(format_g17(v), want, "{v:e}");
            assert_eq!(format_g17(v).parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn scores() {
        assert_eq!(format_score(3.0), "3");
        assert_eq!(format_score(-7.0), "-7");
        assert_eq!(format_score(1.5), "1.5");
        assert_eq!(format_score(0.1), "0.1");
        assert_eq!(format_score(f64::INFINITY), "inf");
        assert_eq!(format_score(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_score(1e300), "1e+300");
        for v in [0.3, 1e-7, 123.456, 9007199254740993.0, -1e22] {
            assert_eq!(format_score(v).parse::<f64>().unwrap(), v);
        }
    }
}
