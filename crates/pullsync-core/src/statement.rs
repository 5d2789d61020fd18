//! What a SQL statement's text says of its parameters.

/// The highest `$n` the statement names: the number of parameters it must be given.
pub fn parameter_count(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut highest = 0;
    for (i, _) in sql.match_indices('$') {
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if let Ok(n) = sql[i + 1..i + 1 + digits].parse::<usize>() {
            highest = highest.max(n);
        }
    }
    highest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_parameter_counts_whatever_the_order() {
        assert_eq!(parameter_count("SELECT 1"), 0);
        assert_eq!(parameter_count("SELECT $2, $10::text[], $9 WHERE $1"), 10);
        assert_eq!(parameter_count("SELECT $1 WHERE $1 = $1"), 1);
        assert_eq!(parameter_count("SELECT '$' || $3"), 3);
    }
}
