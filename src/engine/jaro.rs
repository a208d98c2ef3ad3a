//! Jaro-Winkler similarity of two words, as `strsim::jaro_winkler` computes
//! it, bit for bit.
//!
//! The fuzzy step computes it for every vocabulary word that passes the
//! letter count check: hundreds of thousands of pairs at 1M opportunities.
//! `strsim` decodes both strings as chars again for every char of the first,
//! and allocates its match flags on the heap. Normalised names are nearly
//! always ASCII and short: for those the same algorithm runs here on bytes,
//! with the flags in two machine words. Anything else (a non-ASCII char, a
//! word of more than 64 chars) goes to `strsim` itself. The arithmetic is
//! `strsim`'s, in its order, so the two agree exactly (a property test
//! below holds them to it).

/// Jaro-Winkler similarity of `a` and `b`, equal to `strsim::jaro_winkler`.
pub(crate) fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if !a.is_ascii() || !b.is_ascii() || x.len() > 64 || y.len() > 64 {
        return strsim::jaro_winkler(a, b);
    }
    let sim = jaro(x, y);
    if sim > 0.7 {
        let prefix = x.iter().take(4).zip(y).take_while(|(p, q)| p == q).count();
        sim + 0.1 * prefix as f64 * (1.0 - sim)
    } else {
        sim
    }
}

/// `strsim::generic_jaro` on at most 64 bytes a side.
fn jaro(a: &[u8], b: &[u8]) -> f64 {
    let (la, lb) = (a.len(), b.len());
    if la == 0 && lb == 0 {
        return 1.0;
    } else if la == 0 || lb == 0 {
        return 0.0;
    }
    let range = (la.max(lb) / 2).saturating_sub(1);
    let (mut a_flags, mut b_flags) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &c) in a.iter().enumerate() {
        let from = i.saturating_sub(range);
        let to = lb.min(i + range + 1);
        for (j, &d) in b.iter().enumerate().take(to).skip(from) {
            if d == c && b_flags & (1 << j) == 0 {
                a_flags |= 1 << i;
                b_flags |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    // The matched chars of each, in order: those at different places are
    // transposed, counted twice.
    let mut transpositions = 0usize;
    let mut rest = b_flags;
    let mut flagged = a_flags;
    while flagged != 0 {
        let i = flagged.trailing_zeros() as usize;
        let j = rest.trailing_zeros() as usize;
        if a[i] != b[j] {
            transpositions += 1;
        }
        flagged &= flagged - 1;
        rest &= rest - 1;
    }
    transpositions /= 2;
    ((matches as f64 / la as f64)
        + (matches as f64 / lb as f64)
        + ((matches - transpositions) as f64 / matches as f64))
        / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_pairs_score_as_strsim_does() {
        for (a, b) in [
            ("martha", "marhta"),
            ("dwayne", "duane"),
            ("dixon", "dicksonx"),
            ("contoso", "contoso"),
            ("", ""),
            ("a", ""),
            ("abc", "xyz"),
            ("bsoch", "bosch"),
            ("siemsn", "siemens"),
            ("eaa", "e"),
        ] {
            assert_eq!(
                jaro_winkler(a, b).to_bits(),
                strsim::jaro_winkler(a, b).to_bits(),
                "{a} / {b}"
            );
        }
        assert_eq!(jaro_winkler("martha", "marhta"), 0.9611111111111111);
    }

    #[test]
    fn words_past_64_letters_or_not_ascii_are_left_to_strsim() {
        let long = "ab".repeat(40);
        let longer = format!("{long}c");
        assert_eq!(
            jaro_winkler(&long, &longer).to_bits(),
            strsim::jaro_winkler(&long, &longer).to_bits()
        );
        assert_eq!(
            jaro_winkler("société", "societe").to_bits(),
            strsim::jaro_winkler("société", "societe").to_bits()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        #[test]
        fn it_is_strsims_jaro_winkler_bit_for_bit(
            a in "[abcde\u{e9}]{0,12}|[a-e]{50,70}",
            b in "[abcde\u{e9}]{0,12}|[a-e]{50,70}",
        ) {
            proptest::prop_assert_eq!(
                jaro_winkler(&a, &b).to_bits(),
                strsim::jaro_winkler(&a, &b).to_bits(),
                "{} / {}", a, b
            );
        }
    }
}
