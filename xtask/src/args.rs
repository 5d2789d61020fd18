//! The command line's flags.

use crate::pg_tree::Major;
use crate::process::Result;

/// The value after `flag` in `args`, if the flag is there. `--flag=value` is refused
/// rather than ignored.
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>> {
    if let Some(glued) = args.iter().find(|a| a.starts_with(&format!("{flag}="))) {
        return Err(format!("write {glued:?} as two words: {flag} <value>").into());
    }
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .ok_or_else(|| format!("{flag} needs a value").into()),
    }
}

/// The versions `--pg 15|18` selects (every version without it).
pub fn versions(args: &[String]) -> Result<Vec<Major>> {
    Ok(match flag_value(args, "--pg")? {
        Some(v) => vec![Major::parse(v)?],
        None => Major::ALL.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::{flag_value, versions};
    use crate::pg_tree::Major;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn reads_flags_and_versions() {
        assert_eq!(
            flag_value(&args("--only backup"), "--only").unwrap(),
            Some("backup")
        );
        assert_eq!(flag_value(&args("--pg 18"), "--only").unwrap(), None);
        assert!(flag_value(&args("--only"), "--only").is_err());
        assert!(flag_value(&args("--pg=18"), "--pg").is_err());
        assert_eq!(versions(&args("")).unwrap(), Major::ALL.to_vec());
        assert_eq!(versions(&args("--pg 18")).unwrap(), vec![Major::Pg18]);
        assert!(versions(&args("--pg 16")).is_err());
    }
}
