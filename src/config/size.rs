//! Byte sizes in the file: an integer (bytes) or a string with a unit — `"64 MiB"`,
//! `"512KiB"`, `"1GB"` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024, `B` or no unit is
//! bytes). Written back as the largest binary unit that divides the value.

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `"64 MiB"` and friends.
pub fn parse(text: &str) -> Result<usize, String> {
    let bad = || format!("'{text}' is not a size (e.g. 1048576, \"64 MiB\", \"512KiB\", \"1GB\")");
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = (t[..split].trim(), t[split..].to_ascii_lowercase());
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(bad()),
    };
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(bad)?;
    let bytes = n * multiplier as f64;
    if bytes > usize::MAX as f64 || bytes.fract() != 0.0 {
        return Err(format!("'{text}' is not a whole number of bytes"));
    }
    Ok(bytes as usize)
}

/// `64 MiB` for 67108864, the integer when no binary unit divides it.
pub fn format(bytes: usize) -> String {
    for (unit, m) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{} {unit}", bytes / m);
        }
    }
    bytes.to_string()
}

pub fn serialize<S: Serializer>(bytes: &usize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*bytes))
}

/// The same for a size that may be absent (absent = derived, see the key's docs).
pub mod option {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        super::deserialize(d).map(Some)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => usize::try_from(n).map_err(serde::de::Error::custom),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{size, Config};

    #[test]
    fn sizes_are_human_readable_and_round_trip() {
        let c = Config::from_toml_with_env(
            Some("[state]\ncache_bytes = '32 MiB'\nblock_cache_bytes = '2GB'\n[http]\nmax_body_bytes = 1000"),
            &|_| None,
        )
        .unwrap();
        assert_eq!(c.state.cache_bytes, Some(32 << 20));
        assert_eq!(c.state.block_cache_bytes, Some(2_000_000_000));
        assert_eq!(c.http.max_body_bytes, 1000);
        for (text, bytes) in [
            ("512KiB", 512 << 10),
            ("1 g", 1 << 30),
            ("10b", 10),
            ("7", 7),
            ("1.5 KiB", 1536),
        ] {
            assert_eq!(size::parse(text), Ok(bytes), "{text}");
        }
        for bad in ["", "MiB", "-1 MiB", "0.5 B", "ten", "1 TiB"] {
            assert!(size::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(size::format(64 << 20), "64 MiB");
        assert_eq!(size::format(1000), "1000");
        let text = toml::to_string(&Config::default()).unwrap();
        let back = Config::from_toml_with_env(Some(&text), &|_| None).unwrap();
        assert_eq!(back.state.cache_bytes, Config::default().state.cache_bytes);
    }
}
