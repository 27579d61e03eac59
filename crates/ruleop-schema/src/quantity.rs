//! Kubernetes resource quantities (`1Gi`, `500m`, `1e3`) compared by value, as the API server
//! normalises them (`1024Mi` is stored as `1Gi`, `1000m` as `1`).

use serde_json::Value as Json;

/// An exact quantity: `mantissa × 10^pow10 × 2^pow2`, with trailing decimal zeros moved into
/// `pow10` so equal values have comparable parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    pow10: i32,
    pow2: u32,
}

impl Quantity {
    /// Parses `<signedNumber><suffix>` (suffixes `n u m k M G T P E`, `Ki`..`Ei`, or an
    /// exponent `e3`/`E-2`). `None` when the text is not a quantity.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let number_end = text
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && "+-".contains(c))))
            .map_or(text.len(), |(i, _)| i);
        let (number, suffix) = text.split_at(number_end);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        let mut mantissa: i128 = 0;
        for c in whole.chars().chain(fraction.chars()) {
            let d = i128::from(c.to_digit(10)?);
            mantissa = mantissa.checked_mul(10)?.checked_add(d)?;
        }
        if negative {
            mantissa = -mantissa;
        }
        let mut pow10 = -i32::try_from(fraction.len()).ok()?;
        let mut pow2 = 0;
        match suffix {
            "" => {}
            "n" => pow10 -= 9,
            "u" => pow10 -= 6,
            "m" => pow10 -= 3,
            "k" => pow10 += 3,
            "M" => pow10 += 6,
            "G" => pow10 += 9,
            "T" => pow10 += 12,
            "P" => pow10 += 15,
            "E" => pow10 += 18,
            "Ki" => pow2 = 10,
            "Mi" => pow2 = 20,
            "Gi" => pow2 = 30,
            "Ti" => pow2 = 40,
            "Pi" => pow2 = 50,
            "Ei" => pow2 = 60,
            s if s.starts_with(['e', 'E']) => {
                let exponent = &s[1..];
                let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                pow10 = pow10.checked_add(exponent.parse::<i32>().ok()?)?;
            }
            _ => return None,
        }
        Some(
            Quantity {
                mantissa,
                pow10,
                pow2,
            }
            .normalised(),
        )
    }

    /// A JSON string or number as a quantity.
    pub fn from_json(value: &Json) -> Option<Quantity> {
        match value {
            Json::String(s) => Quantity::parse(s),
            Json::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }

    fn normalised(mut self) -> Self {
        if self.mantissa == 0 {
            return Quantity {
                mantissa: 0,
                pow10: 0,
                pow2: 0,
            };
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.pow10 += 1;
        }
        self
    }

    /// Whether both are the same amount (`false` when the comparison would overflow).
    pub fn same_value(&self, other: &Quantity) -> bool {
        let scale = |q: &Quantity, pow10: i32, pow2: u32| -> Option<i128> {
            let by10 = 10i128.checked_pow(u32::try_from(q.pow10 - pow10).ok()?)?;
            let by2 = 2i128.checked_pow(q.pow2 - pow2)?;
            q.mantissa.checked_mul(by10)?.checked_mul(by2)
        };
        let (pow10, pow2) = (self.pow10.min(other.pow10), self.pow2.min(other.pow2));
        match (scale(self, pow10, pow2), scale(other, pow10, pow2)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// Whether two JSON values are quantities of the same amount.
pub fn same_quantity(a: &Json, b: &Json) -> bool {
    match (Quantity::from_json(a), Quantity::from_json(b)) {
        (Some(a), Some(b)) => a.same_value(&b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same(a: &str, b: &str) -> bool {
        Quantity::parse(a)
            .unwrap()
            .same_value(&Quantity::parse(b).unwrap())
    }

    #[test]
    fn normalised_forms_are_the_same_amount() {
        assert!(same("1024Mi", "1Gi"));
        assert!(same("1000m", "1"));
        assert!(same("0.5", "500m"));
        assert!(same("1.5Gi", "1536Mi"));
        assert!(same("1e3", "1k"));
        assert!(same("1E3", "1000"));
        assert!(same("129e6", "129M"));
        assert!(same("1Ki", "1024"));
        assert!(same("1Ki", "1.024k"));
        assert!(same("0", "0Gi"));
        assert!(same("+2", "2"));
        assert!(same(".5", "0.5"));
        assert!(same("1Ei", "1152921504606846976"));
    }

    #[test]
    fn different_amounts_differ() {
        assert!(!same("1Gi", "1G"));
        assert!(!same("1", "1m"));
        assert!(!same("-1", "1"));
        assert!(!same("100m", "0.01"));
    }

    #[test]
    fn non_quantities_are_refused() {
        for bad in [
            "", "abc", "1Gb", "1.2.3", "e3", "1e", "1e+", "--1", "Gi", "1 Gi x", ".",
        ] {
            assert!(Quantity::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn json_numbers_and_strings() {
        assert!(same_quantity(&json!(1), &json!("1000m")));
        assert!(same_quantity(&json!(0.5), &json!("500m")));
        assert!(same_quantity(&json!(1_073_741_824u64), &json!("1Gi")));
        assert!(!same_quantity(&json!(true), &json!("1")));
        assert!(!same_quantity(&json!("x"), &json!("x")));
    }
}
