//! Readers that the configuration's values are built on. Each names what
//! belongs where a value of the wrong type is (serde's own messages say
//! "expected a string" or "expected i64", which does not tell the user what
//! to write), and the paths and names that must keep a form.

use std::{fmt, ops::RangeInclusive, path::PathBuf};

use serde::{Deserializer, de};

/// Reads an integer that must lie in `range`; outside it (or outside
/// `T`), the error is `message` of the number read. Any other type is
/// refused as not being `expecting` ("a day of the month (1 to 31)").
pub fn ranged<'de, D, T>(
    d: D,
    expecting: &'static str,
    range: RangeInclusive<T>,
    message: impl FnOnce(i64) -> String,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + PartialOrd,
{
    struct Whole(&'static str);
    impl de::Visitor<'_> for Whole {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
        }
    }
    let n = d.deserialize_i64(Whole(expecting))?;
    match T::try_from(n) {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(de::Error::custom(message(n))),
    }
}

/// Reads a string, refusing any other type as not being `expecting` (`a
/// duration like "10s"`): serde's own "expected a string" for `interval =
/// 10` would not tell the user what to write.
pub fn text<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<String, D::Error> {
    struct Text(&'static str);
    impl de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
            Ok(s.to_owned())
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<String, E> {
            Ok(s)
        }
    }
    d.deserialize_string(Text(expecting))
}

/// Reads one of the names of `T` (an enum deriving `Deserialize`),
/// refusing any other type as not being `expecting`, as [`text`] does; a
/// wrong name is refused by `T` with the list of its names.
pub fn named<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: de::DeserializeOwned,
{
    let name = text(d, expecting)?;
    T::deserialize(de::value::StringDeserializer::<D::Error>::new(name))
}

/// A path that must be absolute (`pin_dir`, `state_dir`, `store`): the agent
/// and the commands that read what it keeps run from different working
/// directories, where a relative path would name different files.
pub fn absolute<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = PathBuf::from(text(d, "an absolute path")?);
    if !path.is_absolute() {
        return Err(de::Error::custom(format!(
            "`{}` is not an absolute path (the agent and the commands run in different directories)",
            path.display()
        )));
    }
    Ok(path)
}

/// [`absolute`], for a path that may be left out.
pub fn absolute_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    absolute(d).map(Some)
}

/// A number of series (`metrics.max_series`).
pub fn series<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "a number of series", 0..=u32::MAX, |n| {
        format!("{n} is not a number of series (0 to {})", u32::MAX)
    })
}

/// True when `name` is not empty and only letters, digits, `.`, `_` and
/// `-`: a name that can be a part of a file name or of a `>>>`-separated
/// counter name.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}
