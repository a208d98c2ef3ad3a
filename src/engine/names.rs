//! Company names and domains, reduced to the forms SPEC §3.1 compares.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Legal forms dropped from the end of a name (SPEC §3.1 step 3).
const LEGAL_FORMS: &[&str] = &[
    "inc",
    "incorporated",
    "llc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "corp",
    "corporation",
    "co",
    "company",
    "plc",
    "gmbh",
    "mbh",
    "kg",
    "kgaa",
    "ag",
    "se",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "sl",
    "ltda",
    "bv",
    "nv",
    "oy",
    "oyj",
    "ab",
    "as",
    "asa",
    "aps",
    "kk",
    "pty",
    "pte",
    "sab",
    "sapi",
    "s",
];

/// Latin American legal-form pairs, dropped as a pair from the end of a name
/// (`S.A. de C.V.`, `S. de R.L.`): `de` alone is a word of many names.
const LEGAL_PAIRS: &[[&str; 2]] = &[["de", "cv"], ["de", "rl"]];

fn is_legal_form_or_and(word: &str) -> bool {
    word == "and" || LEGAL_FORMS.contains(&word)
}

/// How many words a legal form (or `and`) takes at the end of `words`: 0, 1,
/// or 2 for a pair. Never all of them: the last remaining word stays.
fn trailing_legal_form(words: &[&str]) -> usize {
    match words {
        [.., a, b] if words.len() > 2 && LEGAL_PAIRS.contains(&[*a, *b]) => 2,
        [.., last] if words.len() > 1 && is_legal_form_or_and(last) => 1,
        _ => 0,
    }
}

/// Normalises a company name: compatibility-decompose and drop accents,
/// lower-case, `&` -> ` and `, drop apostrophes, periods and slashes, other
/// punctuation to spaces, drop a leading `the`, drop trailing legal forms,
/// `and` and the pairs `de cv` / `de rl` (never the last word), collapse
/// spaces.
///
/// `Nokia GmbH & Co. KG` -> `nokia`; `L'Oréal S.A.` -> `loreal`;
/// `Alestra, S. de R.L. de C.V.` -> `alestra`.
pub fn normalize_name(name: &str) -> String {
    let mut flat = String::with_capacity(name.len() + 8);
    let mut push = |c: char| match c {
        '&' => flat.push_str(" and "),
        '\'' | '\u{2018}' | '\u{2019}' | '`' | '\u{00B4}' | '.' | '/' => {}
        c if c.is_alphanumeric() => flat.extend(c.to_lowercase()),
        _ => flat.push(' '),
    };
    if name.is_ascii() {
        // NFKD is the identity on ASCII: skip the decomposition.
        name.chars().for_each(&mut push);
    } else {
        name.nfkd()
            .filter(|c| !is_combining_mark(*c))
            .for_each(push);
    }
    let mut words: Vec<&str> = flat.split_whitespace().collect();
    if words.len() > 1 && words[0] == "the" {
        words.remove(0);
    }
    loop {
        let n = trailing_legal_form(&words);
        if n == 0 {
            break;
        }
        words.truncate(words.len() - n);
    }
    words.join(" ")
}

/// The key under which two names count as equal: the normalised name with all
/// spaces removed (`AT and T` = `ATandT`).
pub fn name_key(normalized: &str) -> String {
    normalized.split(' ').collect()
}

/// Free-mail and ISP domains, as registrable domains: never a company's domain.
const FREE_MAIL: &[&str] = &[
    "126.com",
    "163.com",
    "att.net",
    "bellsouth.net",
    "bigpond.com",
    "btinternet.com",
    "charter.net",
    "comcast.net",
    "cox.net",
    "earthlink.net",
    "fastmail.com",
    "free.fr",
    "freenet.de",
    "hanmail.net",
    "hey.com",
    "icloud.com",
    "laposte.net",
    "libero.it",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "orange.fr",
    "pm.me",
    "proton.me",
    "qq.com",
    "rediffmail.com",
    "rogers.com",
    "sbcglobal.net",
    "seznam.cz",
    "sfr.fr",
    "shaw.ca",
    "sky.com",
    "sympatico.ca",
    "t-online.de",
    "tutanota.com",
    "verizon.net",
    "virginmedia.com",
    "wanadoo.fr",
    "web.de",
    "wp.pl",
    "zohomail.com",
];

/// Free-mail brands that exist under many country suffixes (`yahoo.co.uk`,
/// `hotmail.fr`, `gmx.de`): matched on the label before the public suffix.
const FREE_MAIL_BRANDS: &[&str] = &[
    "aol",
    "gmail",
    "gmx",
    "googlemail",
    "hotmail",
    "outlook",
    "protonmail",
    "rocketmail",
    "yahoo",
    "yandex",
    "ymail",
];

/// Whether a registrable domain belongs to a free-mail or ISP provider.
pub fn is_free_mail(registrable: &str) -> bool {
    if FREE_MAIL.binary_search(&registrable).is_ok() {
        return true;
    }
    let brand = registrable.split('.').next().unwrap_or_default();
    FREE_MAIL_BRANDS.binary_search(&brand).is_ok()
}

/// The registrable domain of a domain, URL or e-mail address: scheme, user,
/// `www.`, path, query and port stripped, lower-cased, reduced with the
/// public-suffix list (`https://eu.shop.acme.co.uk:8443/x` -> `acme.co.uk`).
/// Only the first word of the value is read: website fields copied from a
/// page carry words after the address (`www.boy.co.jp (en)`, `www.lycorp.co.jp
/// /en /`). Free-mail domains, IP addresses and bare suffixes give `None`.
pub fn registrable_domain(input: &str) -> Option<String> {
    let mut host = input.split_whitespace().next().unwrap_or_default();
    if let Some(i) = host.find("://") {
        host = &host[i + 3..];
    }
    if let Some(i) = host.find(['/', '?', '#']) {
        host = &host[..i];
    }
    if let Some(i) = host.rfind('@') {
        host = &host[i + 1..];
    }
    if let Some(i) = host.find(':') {
        host = &host[..i];
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let valid = host.contains('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.split('.').any(str::is_empty);
    if !valid || host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let registrable = psl::domain_str(host)?;
    (!is_free_mail(registrable)).then(|| registrable.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples_normalise() {
        assert_eq!(normalize_name("Nokia GmbH & Co. KG"), "nokia");
        assert_eq!(normalize_name("L'Oréal"), "loreal");
        assert_eq!(normalize_name("L’Oréal S.A."), "loreal");
        assert_eq!(normalize_name("Maersk A/S"), "maersk");
        assert_eq!(normalize_name("AT&T"), "at and t");
        assert_eq!(normalize_name("The Home Depot, Inc."), "home depot");
        assert_eq!(normalize_name("  Acme   Corp  "), "acme");
        assert_eq!(
            normalize_name("Müller-Lüdenscheidt GmbH"),
            "muller ludenscheidt"
        );
        assert_eq!(
            normalize_name("ＡＣＭＥ Ltd"),
            "acme",
            "full-width letters decompose"
        );
    }

    #[test]
    fn the_last_word_is_never_dropped() {
        assert_eq!(normalize_name("Company"), "company");
        assert_eq!(normalize_name("The Co."), "co");
        assert_eq!(normalize_name("The"), "the");
        assert_eq!(normalize_name("Johnson & Johnson"), "johnson and johnson");
        assert_eq!(normalize_name("Smith & Co"), "smith");
    }

    #[test]
    fn latin_american_legal_forms_are_dropped() {
        assert_eq!(normalize_name("Cemex, S.A. de C.V."), "cemex");
        assert_eq!(normalize_name("Alestra, S. de R.L. de C.V."), "alestra");
        assert_eq!(normalize_name("Grupo Bimbo, S.A.B. de C.V."), "grupo bimbo");
        assert_eq!(normalize_name("Desc, S.A.P.I. de C.V."), "desc");
        assert_eq!(normalize_name("Kio Networks S de RL"), "kio networks");
        assert_eq!(normalize_name("Desc S.A. de CV"), normalize_name("Desc"));
    }

    #[test]
    fn a_legal_pair_needs_a_word_before_it() {
        // Dropping `de cv` here would leave nothing.
        assert_eq!(normalize_name("De C.V."), "de cv");
        // Pairs, not their parts: `de` alone is a word of many names.
        assert_eq!(normalize_name("Banco de Credito"), "banco de credito");
        assert_eq!(normalize_name("Casa de S.A."), "casa de");
        assert_eq!(normalize_name("Casa de CV"), "casa");
        assert_eq!(normalize_name("CV de Mexico"), "cv de mexico");
        // `s` is a legal form only at the end, and never the last word.
        assert_eq!(normalize_name("S"), "s");
        assert_eq!(normalize_name("S & S"), "s");
    }

    #[test]
    fn punctuation_only_names_normalise_to_nothing() {
        assert_eq!(normalize_name("—"), "");
        assert_eq!(normalize_name(""), "");
    }

    #[test]
    fn spaces_do_not_matter_for_the_name_key() {
        assert_eq!(
            name_key(&normalize_name("AT and T")),
            name_key(&normalize_name("ATandT"))
        );
        assert_eq!(name_key(&normalize_name("AT&T Inc.")), "atandt");
    }

    #[test]
    fn domains_reduce_to_the_registrable_part() {
        let r = |s| registrable_domain(s);
        assert_eq!(r("eu.shop.acme.co.uk").as_deref(), Some("acme.co.uk"));
        assert_eq!(
            r("https://www.Acme.com/about?x=1").as_deref(),
            Some("acme.com")
        );
        assert_eq!(r("http://acme.com:8080").as_deref(), Some("acme.com"));
        assert_eq!(r("jane@sales.acme.de").as_deref(), Some("acme.de"));
        assert_eq!(r("acme.com.").as_deref(), Some("acme.com"));
        assert_eq!(r("www.acme.io").as_deref(), Some("acme.io"));
        // Words after the address, as website fields copied from a page have.
        assert_eq!(r("www.boy.co.jp (en)").as_deref(), Some("boy.co.jp"));
        assert_eq!(
            r(" www.lycorp.co.jp /en /").as_deref(),
            Some("lycorp.co.jp")
        );
        assert_eq!(
            r("www.myavista.com Outage Map").as_deref(),
            Some("myavista.com")
        );
    }

    #[test]
    fn junk_and_bare_suffixes_have_no_domain() {
        for s in [
            "",
            "acme",
            "co.uk",
            "10.0.0.1",
            "not a domain.com",
            "Official website",
            "a..b.com",
        ] {
            assert_eq!(registrable_domain(s), None, "{s}");
        }
    }

    #[test]
    fn free_mail_counts_as_no_domain() {
        for s in [
            "gmail.com",
            "mail.google.gmail.com",
            "outlook.com",
            "yahoo.co.uk",
            "hotmail.fr",
            "icloud.com",
            "aol.com",
            "proton.me",
            "https://www.gmx.de",
            "bob@Hotmail.com",
        ] {
            assert_eq!(registrable_domain(s), None, "{s}");
        }
        assert_eq!(
            registrable_domain("gmailer.com").as_deref(),
            Some("gmailer.com")
        );
    }

    #[test]
    fn free_mail_lists_stay_sorted_for_binary_search() {
        assert!(FREE_MAIL.windows(2).all(|w| w[0] < w[1]));
        assert!(FREE_MAIL_BRANDS.windows(2).all(|w| w[0] < w[1]));
    }
}
