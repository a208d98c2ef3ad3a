//! Deterministic synthetic channel programs, for benchmarks, demos and property tests.
//!
//! [`write_program`] writes the six files of SPEC §2 (`accounts.csv`, `partners.csv`,
//! `partner_reps.csv`, `opportunities.csv`, `registrations.csv`, `users.csv`) with every column,
//! optional ones included. The output depends only on [`SynthParams`]: the same parameters give
//! the same bytes (every phase draws from its own stream of
//! `ChaCha8Rng::seed_from_u64(seed)`). Every row is valid per SPEC §2, so a run over the files
//! rejects nothing — as long as the configuration has fx rates for `EUR` and `GBP`, which some
//! opportunities use.
//!
//! # Layout
//! Times are laid out around `now`, floored to the minute (call it T). Timestamps are RFC 3339
//! with `Z` (`2026-03-04T10:15:00Z`), dates `YYYY-MM-DD`. Ids are zero-padded to the number of
//! digits of their count, so string order is numeric order: `A-000001`, `P-0001`, `PR-00001`,
//! `O-0000001`, `R-000001`, `U-001` at benchmark size.
//!
//! # Proportions (approximate)
//! - **users**: `max(5, accounts / 2000)` internal reps; `first.last@acmecloud.io`.
//! - **accounts**: name = a syllable word (2 syllables, about 22,500 of them, or 3 syllables,
//!   millions; 25% get a brand suffix such as `-ex`, `-ia`), then 0–2 industry words (`Bakery`,
//!   `Bank`, `Systems`, …; a one-word name always has a 3-syllable word), then a legal form for
//!   50% (`Inc.`, `LLC`, `Ltd`, `GmbH`, `S.A.`, `AG`, `Corp.`, `Co.`, `plc`, `B.V.`,
//!   `GmbH & Co. KG`, …); 3% are `X & Y` names. Normalised names (SPEC §3.1 step 3) are unique
//!   across accounts, partners and made-up customers, and so are domains; first words are
//!   shared a lot (`Zanoli Bakery` next to `Zanoli Bank`), which is what the word-by-word fuzzy
//!   rule must keep apart. Each company has a real domain (first word [+ second word of an `&`
//!   name] + first industry word, lower-cased, on `.com` 50%, `.de`, `.co.uk`, `.io`, `.co`,
//!   `.net`, `.fr`, `.nl`, `.com.au`, `.ch`, `.ai`, `.es`). The `domain` column shows it for 75%
//!   of accounts (0.5% of all accounts show `gmail.com` instead — dirt); `website` is set for 30%,
//!   independently (`https://www.<domain>/about`, `www.<domain>`, with a port, …), so some accounts
//!   are reachable only through `website`. `owner_id` = a random user.
//!   With [`NameProfile::Skewed`] (`generate --names skewed`) account and prospect names are
//!   instead 2-4 words drawn with a Zipf law from a small vocabulary of real company words:
//!   the first from 40 common first words (`First`, `United`, `Global`, `American`,
//!   `National`, ...) 70% of the time, the others from 203 place, surname and industry words;
//!   a third end in a store or branch number (`#12`, `12`, `Store 1042`, `Branch 7`). Thousands
//!   of accounts then share a first word, the hard case for fuzzy matching. Partners and
//!   everything else are drawn as in the default profile, whose bytes do not change.
//!   With [`NameProfile::Real`] (`generate --names real`) they are made of the words of 1,834
//!   real listed companies' names (`tests/fixtures/real-names/companies.csv`, legal forms
//!   dropped): as many words as a real name drawn at random, the first from the names' first
//!   words and the others from their other words, each as often as the names hold it; a fifth
//!   end in a branch number (`#12`, `Branch 7`).
//! - **partners**: tier gold 10% / silver 30% / registered 55% / empty 5%; name from the same
//!   generator with partner words (`Consulting`, `Solutions`, …); every partner has a `domain`.
//!   90% have a `crm_account_id`: a distinct account (at most half of the accounts) whose name and
//!   domain are the partner's. Partners' own accounts are never registered as customers.
//! - **partner_reps**: every partner gets at least one rep (when there are enough reps), the rest
//!   follow a Zipf(1) law over a shuffled partner order (at benchmark size the biggest partner has
//!   about 5,900 reps, the median one 7, the 90th percentile 30, the smallest 1). Email
//!   `first.last@<partner domain>` (a digit is appended when a name repeats within a partner).
//!   10% left (`active` false, `left_on` within the last 18 months), 3% inactive without
//!   `left_on`, 5% joined within the last 60 days, the rest active with `joined_on` in the last 3
//!   years (80%) or empty. `active` is `true`/`false` mostly, empty (= true) for 8% of active
//!   reps, and `yes`/`no`, `TRUE`/`FALSE`, `1`/`0` for some.
//! - **registrations**: the partner is that of a uniformly chosen rep (so skewed like reps) and
//!   `rep` is that rep, as id (50%) or lower-case email (50%). 92% name an existing customer
//!   account: each new one takes the next account of a shuffled list (so most accounts are
//!   registered at most once), and 6% of all registrations are a second partner registering
//!   the account of an earlier registration (partner-vs-partner). 8% name a customer that is not
//!   in the CRM (new name and domain); 30% of those re-register an earlier unknown customer by a
//!   second partner (partner-vs-partner among unmatched groups). `customer_name` variants of the
//!   company name: exact 40%, legal form dropped/changed/added 25%, case or punctuation change
//!   15% (upper/lower case, `Acme, Inc.`, `SA` for `S.A.`, hyphens), a one-character typo at
//!   position >= 4 of a word of length >= 6 10% (Jaro-Winkler stays >= 0.92 for nearly all;
//!   names without such a word fall back to a case change), `The ` prefix or `&`->`and` 5%,
//!   completely different wording (initials or another first word) 5%. The first registration of
//!   an unknown customer uses its exact name. `customer_domain` is set for 60%: 2% of all
//!   registrations give a free-mail domain (gmail.com, outlook.com, …), the rest the customer's
//!   domain as is, upper-cased, or with a subdomain (`eu.shop.`), `www.`, `https://`, a path or a
//!   port. `account_id` is set for 15% of those naming an existing account. Status: approved 45%,
//!   submitted 15%, rejected 8%, expired 10%, cancelled 4%, won 10%, lost 8%. `submitted_at`
//!   within the last 12 months (70% of `submitted` ones within 45 days); `approved_at` =
//!   submitted + 0–10 days for approved/won/lost/expired; `expires_at` explicit (approved + 60, 90
//!   or 180 days) for 30% of those, else empty. Approved ones are laid out by expiry, assuming
//!   the tier windows of the shipped `config/channel-sync.toml` when `expires_at` is empty (gold
//!   180, silver 120, registered 60 days, no tier 90; with the built-in defaults, 90 for all,
//!   the shares below shift but stay visible): 12% expire within the next 14 days,
//!   53% later, 8% lapsed within the last 30 days while still `approved`, 27% lapsed earlier.
//!   `expired` ones lapsed before T, 20% of them within the last 30 days. `opportunity_id` is set
//!   for 20% of approved/won ones (an opportunity on the same account, created after approval,
//!   won when the registration is won). `amount` is set for 70%.
//! - **opportunities**: streamed, never held in memory. 70% direct (empty `partner_id`, owner a
//!   user): account = uniform (70%) or power-law skewed (30%; the biggest account gets hundreds
//!   at benchmark size). 30% partner-sourced: 30% of those come from a registration (its account
//!   and partner, created 0–30 days after submission, and `registration_id` set for half), the
//!   rest are on a skewed account, by the account's "home" partner (85%: the partner of its
//!   first registration, else a fixed random one) or a random rep's partner (15%).
//!   `partner_rep` is one of the partner's reps: id (50%) or email with random upper-case letters
//!   (50%). Status open 35% / won 30% /
//!   lost 35%; `created_at` within the last 24 months; won/lost `close_date` between creation and
//!   T, open ones 1–180 days ahead. Amount 1,000–250,000 (log-uniform, 2 decimals, 40% whole
//!   hundreds). Currency empty 80%, USD 10%, EUR 6%, GBP 4%. Stage plausible for the status.
//!   3% of linked opportunities lost their partner (empty `partner_id` half the time, another
//!   partner's otherwise) — `partner_bypassed` when the registration is active.
//!
//! # Guaranteed findings
//! When there are at least 9 registrations, 3 opportunities, 2 partners and 4 accounts that are
//! not partners' own, 9 of the registrations (at random ids) and 3 of the opportunities are
//! fixed scenarios, all with `account_id` set (or a shared domain) and explicit `expires_at`, so
//! every finding kind of SPEC §3.3 appears whatever the tier windows: `direct_vs_partner` (an
//! open and a won direct opportunity after the approval), `partner_bypassed` (a linked open
//! opportunity without partner), `partner_vs_partner` (an approved and a submitted registration
//! by two partners on one account, and two submitted ones on one unknown customer),
//! `registration_expiring` (expires in 6 days) and `registration_expired` (status `expired`
//! 10 days ago, and `approved` that lapsed 3 days ago). Random opportunities never link to them.
//!
//! # Findings at benchmark size
//! Estimated for `SynthParams::scaled(42, 1_000_000, now)` with the shipped configuration and
//! matching by `account_id`, domain and exact normalised name only (no fuzzy): registrations
//! match by account_id 14%, domain 38%, name 35%, and 14% are left to fuzzy matching or stay
//! unmatched; about 36,700 `direct_vs_partner` (6,000 of them critical), 7,500
//! `partner_vs_partner` on accounts plus 360 among unmatched groups, 400 `partner_bypassed`,
//! 4,600 `registration_expiring` and 4,800 `registration_expired` (with the built-in 90-day
//! default for every tier: 2,800 expiring, 4,200 expired).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Datelike, Utc};
mod review;

use rand::seq::{IndexedRandom, SliceRandom, index};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthParams {
    pub seed: u64,
    pub accounts: usize,
    pub opportunities: usize,
    pub registrations: usize,
    pub reps: usize,
    pub partners: usize,
    /// The clock the data is laid out around (dates relative to it).
    pub now: DateTime<Utc>,
    /// How customer names are built.
    pub names: NameProfile,
}

/// How customer account names are built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NameProfile {
    /// Invented brand words (`Zanoli Bakery`): first words are rarely shared.
    #[default]
    Default,
    /// Skewed the way real CRMs are: 2-4 words drawn with a Zipf law from a
    /// small vocabulary of real company words, very common first words
    /// (`First`, `United`, `Global`, ...), numbered stores and branches
    /// (`First National Bank 1042`): thousands of accounts share a first word.
    Skewed,
    /// The words of 1,834 real listed companies' names, as often as those
    /// names hold them (`tests/fixtures/real-names/`): real letters, lengths
    /// and sharing (`Mitsubishi`, `Sumitomo`, `First`, `Holdings`, `Bank`).
    Real,
}

impl SynthParams {
    /// The benchmark proportions scaled to `opportunities`: 1,000,000 opportunities :
    /// 200,000 accounts : 100,000 registrations : 50,000 reps : 2,000 partners
    /// (each at least 1; partners at least 3).
    pub fn scaled(seed: u64, opportunities: usize, now: DateTime<Utc>) -> Self {
        let part = |per_million: usize| opportunities / (1_000_000 / per_million);
        SynthParams {
            seed,
            accounts: part(200_000).max(1),
            opportunities,
            registrations: part(100_000).max(1),
            reps: part(50_000).max(1),
            partners: part(2_000).max(3),
            now,
            names: NameProfile::Default,
        }
    }
}

/// Rows written per file, and the total size of the files in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub accounts: usize,
    pub opportunities: usize,
    pub registrations: usize,
    pub reps: usize,
    pub partners: usize,
    pub users: usize,
    /// Rows of program_costs.csv and mdf.csv (0 unless asked for).
    pub program_costs: usize,
    pub mdf: usize,
    pub bytes: u64,
}

/// Writes accounts.csv, partners.csv, partner_reps.csv, opportunities.csv,
/// registrations.csv and users.csv into `dir` (created if missing).
pub fn write_program(dir: &Path, p: &SynthParams) -> Result<SynthSummary> {
    write_program_with(dir, p, false)
}

/// As [`write_program`], plus the channel review's inputs (SPEC §6.1) when `review_inputs`:
/// program_costs.csv, mdf.csv and an `opportunities.campaign_id` column (see [`review`]). The
/// other files' bytes do not change.
pub fn write_program_with(
    dir: &Path,
    p: &SynthParams,
    review_inputs: bool,
) -> Result<SynthSummary> {
    let mut m = build(p)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ids = Ids::new(p, m.users);
    let camp = review_inputs.then(|| review::Campaigns::new(p, &m));
    if let Some(camp) = &camp {
        camp.quieten(&mut m);
    }
    let mut files = vec![
        "accounts.csv",
        "partners.csv",
        "partner_reps.csv",
        "users.csv",
        "registrations.csv",
        "opportunities.csv",
    ];
    write_accounts(&dir.join(files[0]), &m, &ids)?;
    write_partners(&dir.join(files[1]), &m, &ids)?;
    write_reps(&dir.join(files[2]), &m, &ids)?;
    write_users(&dir.join(files[3]), p.seed, m.users, &ids)?;
    write_registrations(&dir.join(files[4]), &m, &ids)?;
    write_opportunities(&dir.join(files[5]), &m, p, &ids, camp.as_ref())?;
    let (mut program_costs, mut mdf) = (0, 0);
    if let Some(camp) = &camp {
        let (written, names) = review::write_files(dir, &m, &ids, camp)?;
        program_costs = written.program_costs;
        mdf = written.mdf;
        files.extend(names);
    }
    let mut bytes = 0;
    for f in files {
        let path = dir.join(f);
        bytes += fs::metadata(&path)
            .with_context(|| format!("reading size of {}", path.display()))?
            .len();
    }
    Ok(SynthSummary {
        accounts: m.accounts.len(),
        opportunities: p.opportunities,
        registrations: m.regs.len(),
        reps: m.reps.len(),
        partners: m.partners.len(),
        users: m.users,
        program_costs,
        mdf,
        bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Headers (SPEC §2)

const ACCOUNTS_HEADER: [&str; 5] = ["id", "name", "domain", "website", "owner_id"];
const PARTNERS_HEADER: [&str; 5] = ["id", "name", "tier", "crm_account_id", "domain"];
const REPS_HEADER: [&str; 7] = [
    "id",
    "partner_id",
    "email",
    "name",
    "active",
    "joined_on",
    "left_on",
];
const OPPS_HEADER: [&str; 13] = [
    "id",
    "account_id",
    "status",
    "created_at",
    "name",
    "owner_id",
    "stage",
    "amount",
    "currency",
    "close_date",
    "partner_id",
    "partner_rep",
    "registration_id",
];
const REGS_HEADER: [&str; 12] = [
    "id",
    "partner_id",
    "customer_name",
    "status",
    "submitted_at",
    "rep",
    "customer_domain",
    "account_id",
    "opportunity_id",
    "approved_at",
    "expires_at",
    "amount",
];
const USERS_HEADER: [&str; 3] = ["id", "name", "email"];

// ---------------------------------------------------------------------------------------------
// Vocabulary

#[rustfmt::skip]
const ONSETS: [&str; 15] = [
    "b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
];
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];
const CODAS: [&str; 2] = ["", "n"];
const SUFFIXES: [&str; 10] = ["ex", "ia", "on", "ix", "o", "a", "us", "ly", "ium", "era"];

#[rustfmt::skip]
const INDUSTRY: [&str; 48] = [
    "Bakery", "Bank", "Systems", "Labs", "Logistics", "Health", "Foods", "Capital", "Software",
    "Analytics", "Energy", "Motors", "Pharma", "Media", "Retail", "Insurance", "Robotics",
    "Dynamics", "Networks", "Textiles", "Farms", "Brewing", "Design", "Studios", "Hotels",
    "Airlines", "Shipping", "Mining", "Chemicals", "Biotech", "Security", "Telecom", "Realty",
    "Holdings", "Industries", "Clinic", "Dental", "Legal", "Education", "Games", "Apparel",
    "Outdoor", "Marine", "Aerospace", "Solar", "Water", "Paper", "Steel",
];
#[rustfmt::skip]
const PARTNER_WORDS: [&str; 14] = [
    "Consulting", "Solutions", "Partners", "Group", "Technologies", "Integration", "Advisory",
    "Digital", "Cloud", "Services", "Data", "Tech", "Systems", "Labs",
];
/// Legal forms with weights; every one normalises away (SPEC §3.1 step 3).
#[rustfmt::skip]
const LEGAL: [(&str, u32); 22] = [
    ("Inc.", 20), ("LLC", 15), ("Ltd", 12), ("GmbH", 10), ("Corp.", 8), ("Co.", 4), ("plc", 3),
    ("S.A.", 5), ("AG", 4), ("B.V.", 4), ("Limited", 3), ("Pty Ltd", 2), ("Oy", 1), ("AB", 2),
    ("N.V.", 1), ("S.r.l.", 2), ("SAS", 2), ("A/S", 1), ("Corporation", 2),
    ("GmbH & Co. KG", 1), ("S.p.A.", 1), ("Ltda.", 1),
];
/// Skewed profile: first words of real company names, most common first.
#[rustfmt::skip]
const SKEWED_FIRST: [&str; 40] = [
    "First", "United", "Global", "American", "National", "General", "International", "Pacific",
    "Atlantic", "Southern", "Northern", "Western", "Eastern", "Central", "Premier", "Advanced",
    "Allied", "Standard", "Royal", "Capital", "Summit", "Pioneer", "Liberty", "Heritage",
    "Integrated", "Consolidated", "Continental", "Midwest", "Metro", "Coastal", "Mountain",
    "Valley", "Great", "New", "Tri", "Old", "Citizens", "Community", "Superior", "Precision",
];
/// Skewed profile: the other words, most common first (places, surnames and
/// industry words, as real CRMs spell them).
#[rustfmt::skip]
const SKEWED_WORDS: [&str; 203] = [
    "Services", "Solutions", "Group", "Systems", "Bank", "Health", "Partners", "Holdings",
    "Technologies", "Industries", "Financial", "Insurance", "Energy", "Construction", "Medical",
    "Care", "Supply", "Logistics", "Consulting", "Manufacturing", "Trust", "Credit", "Union",
    "Home", "Auto", "Foods", "Electric", "Steel", "Software", "Networks", "Communications",
    "Media", "Realty", "Properties", "Engineering", "Distribution", "Retail", "Stores",
    "Pharmacy", "Dental", "Clinic", "Labs", "Chemicals", "Plastics", "Packaging", "Paper",
    "Airlines", "Transport", "Freight", "Marine", "Parts", "Equipment", "Tools", "Hardware",
    "Furniture", "Apparel", "Textiles", "Farms", "Dairy", "Bakery", "Brewing", "Hotels",
    "Resorts", "Travel", "Education", "Academy", "Advisors", "Investments", "Mortgage",
    "Savings", "Federal", "Mutual", "Life", "Water", "Gas", "Oil", "Mining", "Resources",
    "Environmental", "Waste", "Security", "Data", "Cloud", "Digital", "Research", "Design",
    "Studio", "Press", "Printing", "Graphics", "Electronics", "Devices", "Instruments",
    "Controls", "Aerospace", "Defense", "Power", "Motors", "Pharma", "Biotech", "Telecom",
    "Capital", "Management", "Development", "Associates", "Enterprises", "Products",
    "Materials", "Metals", "Glass", "Concrete", "Lumber", "Roofing", "Plumbing", "Heating",
    "Landscaping", "Cleaning", "Staffing", "Recruiting", "Legal", "Accounting", "Marketing",
    "Advertising", "Events", "Entertainment", "Sports", "Fitness", "Wellness", "Hospital",
    "Senior", "Living", "Child", "Learning", "Institute", "Foundation", "County", "City",
    "State", "Texas", "Ohio", "Carolina", "Florida", "California", "Georgia", "Virginia",
    "Michigan", "Jersey", "York", "Boston", "Chicago", "Dallas", "Houston", "Atlanta", "Denver",
    "Phoenix", "Seattle", "Portland", "River", "Lake", "Bay", "Coast", "Harbor", "Ridge",
    "Springs", "Creek", "Park", "Hill", "Oak", "Pine", "Cedar", "Maple", "Eagle", "Star", "Sun",
    "Blue", "Green", "Red", "Gold", "Silver", "Smith", "Johnson", "Williams", "Brown", "Jones",
    "Miller", "Davis", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Jackson",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Allen", "Young", "King",
];
#[rustfmt::skip]
const TLDS: [(&str, u32); 12] = [
    (".com", 50), (".de", 8), (".co.uk", 8), (".io", 8), (".co", 5), (".net", 5), (".fr", 4),
    (".nl", 3), (".com.au", 3), (".ch", 2), (".ai", 2), (".es", 2),
];
#[rustfmt::skip]
const FREEMAIL: [&str; 5] = [
    "gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com",
];
#[rustfmt::skip]
const FIRST_NAMES: [&str; 60] = [
    "James", "Mary", "John", "Linda", "Robert", "Susan", "Michael", "Karen", "David", "Lisa",
    "William", "Nancy", "Richard", "Sandra", "Joseph", "Ashley", "Thomas", "Emily", "Daniel",
    "Donna", "Matthew", "Michelle", "Anthony", "Carol", "Mark", "Amanda", "Paul", "Melissa",
    "Steven", "Deborah", "Andrew", "Laura", "Kevin", "Rebecca", "Brian", "Sharon", "George",
    "Cynthia", "Omar", "Aisha", "Wei", "Mei", "Hiroshi", "Yuki", "Lars", "Ingrid", "Pierre",
    "Camille", "Marco", "Giulia", "Carlos", "Lucia", "Ivan", "Olga", "Arjun", "Priya", "Kwame",
    "Amara", "Sean", "Niamh",
];
#[rustfmt::skip]
const LAST_NAMES: [&str; 80] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Mueller", "Schmidt", "Schneider",
    "Fischer", "Weber", "Dubois", "Moreau", "Laurent", "Rossi", "Russo", "Ferrari", "Esposito",
    "Silva", "Santos", "Oliveira", "Kowalski", "Nowak", "Ivanov", "Tanaka", "Suzuki", "Sato",
    "Kim", "Park", "Chen", "Wang", "Li", "Patel", "Sharma", "Okafor", "Murphy",
];
#[rustfmt::skip]
const DEAL_TYPES: [&str; 8] = [
    "New Business", "Expansion", "Renewal", "Upsell", "Pilot", "Enterprise License",
    "Add-on Seats", "Platform Migration",
];
#[rustfmt::skip]
const OPEN_STAGES: [(&str, u32); 5] = [
    ("Prospecting", 25), ("Qualification", 25), ("Needs Analysis", 15), ("Proposal", 20),
    ("Negotiation", 15),
];
const VENDOR_DOMAIN: &str = "acmecloud.io";

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// The protection window assumed when `expires_at` is empty: the tier windows of the shipped
/// `config/channel-sync.toml` (gold 180, silver 120, registered 60 days), else
/// `rules.protection_days` (90).
fn implicit_window(tier: &str) -> i64 {
    DAY * match tier {
        "gold" => 180,
        "silver" => 120,
        "registered" => 60,
        _ => 90,
    }
}

// ---------------------------------------------------------------------------------------------
// Model (everything except the opportunities)

#[derive(Debug, Clone)]
struct Company {
    /// The name without its legal form.
    core: String,
    /// Index into `LEGAL`.
    legal: Option<usize>,
    /// The display name (`core` + legal form).
    name: String,
    /// The company's real registrable domain.
    domain: String,
}

#[derive(Debug)]
struct Account {
    co: Company,
    show_domain: bool,
    freemail: bool,
    website: Option<u8>,
    owner: u32,
}

#[derive(Debug)]
struct Partner {
    co: Company,
    tier: &'static str,
    account: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepState {
    Left,
    Inactive,
    New,
    Active,
}

#[derive(Debug)]
struct Rep {
    partner: u32,
    first: u16,
    last: u16,
    /// 0 = no suffix, else the digit(s) appended to the local part of the email.
    dup: u16,
    joined: Option<i64>,
    left: Option<i64>,
    active_text: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegStatus {
    Approved,
    Submitted,
    Rejected,
    Expired,
    Cancelled,
    Won,
    Lost,
}

impl RegStatus {
    fn as_str(self) -> &'static str {
        match self {
            RegStatus::Approved => "approved",
            RegStatus::Submitted => "submitted",
            RegStatus::Rejected => "rejected",
            RegStatus::Expired => "expired",
            RegStatus::Cancelled => "cancelled",
            RegStatus::Won => "won",
            RegStatus::Lost => "lost",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variant {
    Exact,
    Legal,
    Case,
    Typo,
    TheAnd,
    Different,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Customer {
    Account(u32),
    Prospect(u32),
}

#[derive(Debug)]
struct Reg {
    partner: u32,
    rep: Option<u32>,
    rep_as_email: bool,
    customer: Customer,
    #[allow(dead_code)] // read by the tests
    variant: Variant,
    customer_name: String,
    customer_domain: Option<String>,
    account_id_set: bool,
    status: RegStatus,
    submitted: i64,
    approved: Option<i64>,
    expires: Option<i64>,
    amount: Option<u64>,
    /// `registrations.opportunity_id` (0-based opportunity index).
    opp_link: Option<u32>,
    anchor: bool,
}

#[derive(Debug, Clone, Copy)]
enum Plan {
    /// The opportunity named by the registration's `opportunity_id`.
    Linked(u32),
    /// Anchor: a direct open opportunity on the account.
    DirectOpen(u32),
    /// Anchor: a direct won opportunity on the account, closed on the given day.
    DirectWon(u32, i64),
    /// Anchor: an open opportunity without partner, linked to the registration by its
    /// `registration_id`.
    Bypass(u32),
}

struct Model {
    now: i64,
    users: usize,
    accounts: Vec<Account>,
    /// Accounts in a shuffled order, for the skewed pick.
    account_rank: Vec<u32>,
    partners: Vec<Partner>,
    reps: Vec<Rep>,
    /// `partner_reps[rep_start[p]..rep_start[p + 1]]` are partner p's reps.
    rep_start: Vec<u32>,
    partner_reps: Vec<u32>,
    regs: Vec<Reg>,
    /// Registrations on existing accounts that random opportunities may come from.
    linkable: Vec<u32>,
    /// Sorted by opportunity index.
    plans: Vec<(u32, Plan)>,
    /// Per account, the partner that most of its partner-sourced opportunities come from: the
    /// partner of its first registration, else a random rep's partner.
    home_partner: Vec<u32>,
}

fn stream(seed: u64, phase: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(phase);
    rng
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Uniform in `lo..=hi` (or `lo` when the range is empty).
fn between(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// A random multiple of a minute in `lo..=hi`.
fn minutes_between(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    between(rng, lo.div_euclid(MINUTE), hi.div_euclid(MINUTE)) * MINUTE
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn pick_weighted<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|&(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn pick_index_weighted(rng: &mut ChaCha8Rng, items: &[(&str, u32)]) -> usize {
    let total: u32 = items.iter().map(|&(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (i, &(_, w)) in items.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    items.len() - 1
}

/// Companies with unique normalised names and unique domains (tracked by 64-bit hashes).
struct CompanyGen {
    syllables: Vec<String>,
    profile: NameProfile,
    /// Zipf samplers over `SKEWED_FIRST` and `SKEWED_WORDS` (skewed profile).
    first_words: Zipf,
    other_words: Zipf,
    /// The real profile's words.
    real: RealWords,
    names: HashSet<u64, BuildHasherDefault<MixHasher>>,
    domains: HashSet<u64, BuildHasherDefault<MixHasher>>,
    scratch: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CompanyKind {
    Customer,
    Partner,
}

/// FNV-1a, for the uniqueness sets.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A hasher for keys that are already hashes: one multiply-xorshift round.
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv(bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl CompanyGen {
    fn new(profile: NameProfile) -> Self {
        let mut syllables = Vec::with_capacity(ONSETS.len() * VOWELS.len() * CODAS.len());
        for o in ONSETS {
            for v in VOWELS {
                for c in CODAS {
                    syllables.push(format!("{o}{v}{c}"));
                }
            }
        }
        CompanyGen {
            syllables,
            profile,
            first_words: Zipf::new(SKEWED_FIRST.len()),
            other_words: Zipf::new(SKEWED_WORDS.len()),
            real: if profile == NameProfile::Real {
                RealWords::load()
            } else {
                RealWords::default()
            },
            names: HashSet::default(),
            domains: HashSet::default(),
            scratch: String::with_capacity(64),
        }
    }

    /// Appends a capitalised brand word (2 or 3 syllables, sometimes a suffix) to `out`.
    fn push_word(&self, rng: &mut ChaCha8Rng, syllables: usize, out: &mut String) {
        let start = out.len();
        for _ in 0..syllables {
            out.push_str(&self.syllables[rng.random_range(0..self.syllables.len())]);
        }
        if chance(rng, 0.25) {
            out.push_str(pick(rng, &SUFFIXES));
        }
        if let Some(first) = out.get_mut(start..start + 1) {
            first.make_ascii_uppercase();
        }
    }

    fn word(&self, rng: &mut ChaCha8Rng, syllables: usize) -> String {
        let mut w = String::with_capacity(12);
        self.push_word(rng, syllables, &mut w);
        w
    }

    /// A default-profile name without its legal form (`Zanoli Bakery`), and
    /// the stem of its domain.
    fn default_core(
        &self,
        rng: &mut ChaCha8Rng,
        kind: CompanyKind,
        core: &mut String,
        stem: &mut String,
    ) {
        let three = chance(rng, 0.3);
        self.push_word(rng, if three { 3 } else { 2 }, core);
        stem.push_str(core);
        if kind == CompanyKind::Customer && chance(rng, 0.03) {
            // An `X & Y` name.
            core.push_str(" & ");
            let at = core.len();
            match rng.random_range(0..4) {
                0 => core.push_str("Sons"),
                1 => core.push_str("Partners"),
                _ => self.push_word(rng, 2, core),
            }
            stem.push_str(&core[at..]);
        } else {
            let words: &[&str] = match kind {
                CompanyKind::Customer => &INDUSTRY,
                CompanyKind::Partner => &PARTNER_WORDS,
            };
            let x = rng.random::<f64>();
            let n = match kind {
                CompanyKind::Customer if x < 0.2 && three => 0,
                CompanyKind::Customer if x < 0.75 => 1,
                CompanyKind::Customer => 2,
                CompanyKind::Partner if x < 0.1 && three => 0,
                CompanyKind::Partner if x < 0.8 => 1,
                CompanyKind::Partner => 2,
            };
            let a = rng.random_range(0..words.len());
            if n >= 1 {
                core.push(' ');
                core.push_str(words[a]);
                stem.push_str(words[a]);
            }
            if n == 2 {
                let mut b = rng.random_range(0..words.len() - 1);
                if b >= a {
                    b += 1;
                }
                core.push(' ');
                core.push_str(words[b]);
            }
        }
    }

    /// A skewed-profile name without its legal form (`First National Bank
    /// 1042`), and the stem of its domain: 2-4 words, the first from
    /// `SKEWED_FIRST` (70%) or `SKEWED_WORDS`, the others from `SKEWED_WORDS`,
    /// all Zipf-distributed; a third of the names end in a store or branch
    /// number (`#12`, `12`, `Store 12`, `Branch 12`), which counts among the
    /// words. The domain stem drops the number.
    fn skewed_core(&self, rng: &mut ChaCha8Rng, core: &mut String, stem: &mut String) {
        // 0: no number; 1: `#12` or `12`; 2: `Store 12` or `Branch 12`.
        let style = pick_weighted(rng, &[(0u8, 67), (1, 17), (2, 16)]);
        let words = (rng.random_range(2..=4usize) - usize::from(style)).max(1);
        let first = if chance(rng, 0.7) {
            SKEWED_FIRST[self.first_words.sample(rng)]
        } else {
            SKEWED_WORDS[self.other_words.sample(rng)]
        };
        core.push_str(first);
        stem.push_str(first);
        let mut last = first;
        for _ in 1..words {
            let mut w = SKEWED_WORDS[self.other_words.sample(rng)];
            if w == last {
                w = SKEWED_WORDS[self.other_words.sample(rng)];
            }
            core.push(' ');
            core.push_str(w);
            stem.push_str(w);
            last = w;
        }
        if style > 0 {
            let n: u32 = if chance(rng, 0.5) {
                rng.random_range(1..100)
            } else {
                rng.random_range(100..10_000)
            };
            let prefix = match (style, chance(rng, 0.5)) {
                (1, true) => "#",
                (1, false) => "",
                (_, true) => "Store ",
                (_, false) => "Branch ",
            };
            core.push_str(&format!(" {prefix}{n}"));
        }
    }

    fn generate(&mut self, rng: &mut ChaCha8Rng, kind: CompanyKind) -> Company {
        let mut core = String::with_capacity(40);
        let mut stem = String::with_capacity(40);
        let mut attempt = 0;
        loop {
            attempt += 1;
            core.clear();
            stem.clear();
            if kind == CompanyKind::Customer && self.profile == NameProfile::Skewed {
                self.skewed_core(rng, &mut core, &mut stem);
            } else if kind == CompanyKind::Customer && self.profile == NameProfile::Real {
                self.real.core(rng, &mut core, &mut stem);
            } else {
                self.default_core(rng, kind, &mut core, &mut stem);
            }
            stem.make_ascii_lowercase();

            let legal = chance(rng, 0.5).then(|| pick_index_weighted(rng, &LEGAL));
            // Unique under the engine's name equality (spaces removed).
            let key = fnv(channel_sync::engine::names::name_key(&norm_name(&core)).as_bytes());
            if self.names.contains(&key) && attempt < 50 {
                continue;
            }
            let tld = pick_index_weighted(rng, &TLDS);
            let mut domain = None;
            for k in 0..TLDS.len() {
                self.scratch.clear();
                self.scratch.push_str(&stem);
                self.scratch.push_str(TLDS[(tld + k) % TLDS.len()].0);
                let h = fnv(self.scratch.as_bytes());
                if !self.domains.contains(&h) {
                    domain = Some((self.scratch.clone(), h));
                    break;
                }
            }
            let (domain, domain_key) = match domain {
                Some(d) => d,
                None if attempt < 50 => continue,
                None => {
                    let d = format!("{stem}{attempt}.com");
                    let h = fnv(d.as_bytes());
                    (d, h)
                }
            };
            self.names.insert(key);
            self.domains.insert(domain_key);
            let name = with_legal(&core, legal);
            return Company {
                core,
                legal,
                name,
                domain,
            };
        }
    }
}

fn with_legal(core: &str, legal: Option<usize>) -> String {
    match legal {
        Some(l) => format!("{core} {}", LEGAL[l].0),
        None => core.to_string(),
    }
}

/// The engine's normalised name (SPEC §3.1 step 3): uniqueness and the name
/// variants are judged by the same rule that will match them.
/// The real profile's vocabulary: the normalised words of real listed
/// companies' names (legal forms dropped), each as often as the names hold it.
#[derive(Default)]
struct RealWords {
    /// The names' first words, and their other words, capitalised.
    first: Vec<String>,
    other: Vec<String>,
    /// Each name's word count.
    sizes: Vec<usize>,
}

impl RealWords {
    fn load() -> Self {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/real-names/companies.csv"
        ));
        let mut words = RealWords::default();
        let capitalised = |w: &str| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        };
        for row in csv::Reader::from_reader(text.as_bytes())
            .records()
            .flatten()
        {
            let norm = norm_name(&row[1]);
            let mut split = norm.split(' ').filter(|w| !w.is_empty());
            let Some(first) = split.next() else { continue };
            words.first.push(capitalised(first));
            let before = words.other.len();
            words.other.extend(split.map(capitalised));
            words.sizes.push(1 + words.other.len() - before);
        }
        words
    }

    /// A real-profile name without its legal form, and the stem of its
    /// domain: as many words as a real name drawn at random, the first from
    /// the real first words, the others from the real other words (each as
    /// often as the names hold it); a fifth end in a store or branch number
    /// as in the skewed profile, which counts among the words.
    fn core(&self, rng: &mut ChaCha8Rng, core: &mut String, stem: &mut String) {
        let (Some(size), Some(first)) = (self.sizes.choose(rng), self.first.choose(rng)) else {
            return;
        };
        let style = pick_weighted(rng, &[(0u8, 80), (1, 10), (2, 10)]);
        core.push_str(first);
        stem.push_str(first);
        for _ in 1..(*size).saturating_sub(usize::from(style > 1)).max(1) {
            let Some(w) = self.other.choose(rng) else {
                break;
            };
            core.push(' ');
            core.push_str(w);
            stem.push_str(w);
        }
        if style > 0 {
            let n: u32 = rng.random_range(1..1000);
            let prefix = if style == 1 { "#" } else { "Branch " };
            core.push_str(&format!(" {prefix}{n}"));
        }
    }
}

fn norm_name(name: &str) -> String {
    channel_sync::engine::names::normalize_name(name)
}

/// Zipf(1) sampler over `0..n`, index 0 the most likely.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut acc = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                acc += 1.0 / (i as f64 + 1.0);
                acc
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

/// Zipf(1) sampler over `n` items in a shuffled order.
struct Skewed {
    cumulative: Vec<f64>,
    order: Vec<u32>,
}

impl Skewed {
    fn new(rng: &mut ChaCha8Rng, n: usize) -> Self {
        let mut acc = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                acc += 1.0 / (i as f64 + 1.0);
                acc
            })
            .collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(rng);
        Skewed { cumulative, order }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= x);
        self.order[i.min(self.order.len() - 1)]
    }
}

fn build(p: &SynthParams) -> Result<Model> {
    if p.accounts == 0 {
        bail!("synthetic program: accounts must be at least 1");
    }
    if p.partners == 0 {
        bail!("synthetic program: partners must be at least 1");
    }
    if !(1900..=9000).contains(&p.now.year()) {
        bail!("synthetic program: now must be between the years 1900 and 9000");
    }
    for (what, n) in [
        ("accounts", p.accounts),
        ("opportunities", p.opportunities),
        ("registrations", p.registrations),
        ("reps", p.reps),
        ("partners", p.partners),
    ] {
        if n > u32::MAX as usize / 2 {
            bail!("synthetic program: too many {what}: {n}");
        }
    }
    let now = p.now.timestamp().div_euclid(MINUTE) * MINUTE;
    let users = (p.accounts / 2000).max(5);

    // Companies: accounts, then partners (taking over some accounts as their own).
    let mut rng = stream(p.seed, 1);
    let mut gen_ = CompanyGen::new(p.names);
    let mut accounts: Vec<Account> = (0..p.accounts)
        .map(|_| {
            let co = gen_.generate(&mut rng, CompanyKind::Customer);
            let freemail = chance(&mut rng, 0.005);
            Account {
                co,
                show_domain: freemail || chance(&mut rng, 0.75),
                freemail,
                website: chance(&mut rng, 0.30).then(|| rng.random_range(0..6)),
                owner: rng.random_range(0..users as u32),
            }
        })
        .collect();
    let max_partner_accounts = p.accounts / 2;
    let own_accounts = index::sample(&mut rng, p.accounts, max_partner_accounts.min(p.partners));
    let mut own_accounts = own_accounts.iter();
    let mut is_partner_account = vec![false; p.accounts];
    let partners: Vec<Partner> = (0..p.partners)
        .map(|_| {
            let co = gen_.generate(&mut rng, CompanyKind::Partner);
            let tier = pick_weighted(
                &mut rng,
                &[("gold", 10), ("silver", 30), ("registered", 55), ("", 5)],
            );
            let account = if chance(&mut rng, 0.9) {
                own_accounts.next().map(|a| {
                    is_partner_account[a] = true;
                    let acc = &mut accounts[a];
                    acc.co = co.clone();
                    acc.freemail = false;
                    a as u32
                })
            } else {
                None
            };
            Partner { co, tier, account }
        })
        .collect();
    let mut account_rank: Vec<u32> = (0..p.accounts as u32).collect();
    account_rank.shuffle(&mut rng);
    let mut customers: Vec<u32> = (0..p.accounts as u32)
        .filter(|&a| !is_partner_account[a as usize])
        .collect();
    customers.shuffle(&mut rng);

    // Reps.
    let mut rng = stream(p.seed, 2);
    let skew = Skewed::new(&mut rng, p.partners);
    let mut owners: Vec<u32> = (0..p.reps)
        .map(|i| {
            if i < p.partners {
                i as u32
            } else {
                skew.sample(&mut rng)
            }
        })
        .collect();
    owners.shuffle(&mut rng);
    let mut seen: HashMap<(u32, u16, u16), u16> = HashMap::new();
    let reps: Vec<Rep> = owners
        .iter()
        .map(|&partner| {
            let first = rng.random_range(0..FIRST_NAMES.len()) as u16;
            let last = rng.random_range(0..LAST_NAMES.len()) as u16;
            let count = seen.entry((partner, first, last)).or_insert(0);
            let dup = *count;
            *count += 1;
            let x = rng.random::<f64>();
            let (state, joined, left) = if x < 0.10 {
                let left = now - minutes_between(&mut rng, DAY, 548 * DAY);
                let joined = chance(&mut rng, 0.8)
                    .then(|| left - minutes_between(&mut rng, 60 * DAY, 1000 * DAY));
                (RepState::Left, joined, Some(left))
            } else if x < 0.13 {
                let joined = chance(&mut rng, 0.8)
                    .then(|| now - minutes_between(&mut rng, 0, 3 * 365 * DAY));
                (RepState::Inactive, joined, None)
            } else if x < 0.18 {
                let joined = now - minutes_between(&mut rng, 0, 60 * DAY);
                (RepState::New, Some(joined), None)
            } else {
                let joined = chance(&mut rng, 0.8)
                    .then(|| now - minutes_between(&mut rng, 0, 3 * 365 * DAY));
                (RepState::Active, joined, None)
            };
            let active = state == RepState::New || state == RepState::Active;
            let y = rng.random::<f64>();
            let active_text = match (active, y) {
                (true, y) if y < 0.85 => "true",
                (true, y) if y < 0.93 => "",
                (true, _) => pick(&mut rng, &["yes", "TRUE", "1", "True"]),
                (false, y) if y < 0.85 => "false",
                (false, _) => pick(&mut rng, &["no", "FALSE", "0", "False"]),
            };
            Rep {
                partner,
                first,
                last,
                dup,
                joined,
                left,
                active_text,
            }
        })
        .collect();
    let mut rep_start = vec![0u32; p.partners + 1];
    for r in &reps {
        rep_start[r.partner as usize + 1] += 1;
    }
    for i in 0..p.partners {
        rep_start[i + 1] += rep_start[i];
    }
    let mut fill = rep_start.clone();
    let mut partner_reps = vec![0u32; reps.len()];
    for (i, r) in reps.iter().enumerate() {
        let slot = &mut fill[r.partner as usize];
        partner_reps[*slot as usize] = i as u32;
        *slot += 1;
    }

    let mut m = Model {
        now,
        users,
        accounts,
        account_rank,
        partners,
        reps,
        rep_start,
        partner_reps,
        regs: Vec::with_capacity(p.registrations),
        linkable: Vec::new(),
        plans: Vec::new(),
        home_partner: Vec::new(),
    };

    // Registrations.
    let mut rng = stream(p.seed, 3);
    let anchors_on = p.registrations >= ANCHORS.len()
        && p.opportunities >= 3
        && p.partners >= 2
        && customers.len() >= 4;
    let mut anchor_at: HashMap<usize, Anchor> = HashMap::new();
    if anchors_on {
        let at = index::sample(&mut rng, p.registrations, ANCHORS.len());
        for (i, a) in at.iter().zip(ANCHORS) {
            anchor_at.insert(i, a);
        }
    }
    let (p1, rep1) = m.random_partner(&mut rng);
    let (p2, rep2) = m.other_partner(&mut rng, p1);
    let (p3, rep3) = if p.partners >= 3 {
        let mut found = None;
        for _ in 0..64 {
            let (q, r) = m.random_partner(&mut rng);
            if q != p1 && q != p2 {
                found = Some((q, r));
                break;
            }
        }
        found.unwrap_or_else(|| {
            let q = (0..p.partners as u32)
                .find(|&q| q != p1 && q != p2)
                .unwrap_or(p1);
            (q, m.rep_of(&mut rng, q))
        })
    } else {
        (p1, rep1)
    };
    let anchor_prospect = if anchors_on {
        let co = gen_.generate(&mut rng, CompanyKind::Customer);
        Some(co)
    } else {
        None
    };
    let mut prospects: Vec<Company> = Vec::new();
    if let Some(co) = anchor_prospect {
        prospects.push(co);
    }
    let anchor_accounts: Vec<u32> = customers.iter().take(4).copied().collect();
    let reserved = if anchors_on { 4 } else { 0 };
    let mut next_customer = 0;
    // Non-anchor registrations on existing accounts / on prospects (first registrations).
    let mut account_regs: Vec<u32> = Vec::new();
    let mut prospect_regs: Vec<u32> = Vec::new();
    for i in 0..p.registrations {
        if let Some(&a) = anchor_at.get(&i) {
            let (partner, rep) = match a {
                Anchor::DvpA | Anchor::PvpC1 | Anchor::ProspectU1 => (p1, rep1),
                Anchor::BypassB | Anchor::PvpC2 | Anchor::ProspectU2 => (p2, rep2),
                Anchor::Expiring | Anchor::ExpiredStatus | Anchor::ExpiredApproved => (p3, rep3),
            };
            let reg = m.anchor_reg(a, partner, rep, &anchor_accounts, &prospects[0]);
            m.regs.push(reg);
            continue;
        }
        let (mut partner, mut rep) = m.random_partner(&mut rng);
        let status = pick_weighted(
            &mut rng,
            &[
                (RegStatus::Approved, 45),
                (RegStatus::Submitted, 15),
                (RegStatus::Rejected, 8),
                (RegStatus::Expired, 10),
                (RegStatus::Cancelled, 4),
                (RegStatus::Won, 10),
                (RegStatus::Lost, 8),
            ],
        );
        let x = rng.random::<f64>();
        let (customer, variant) = if x < 0.92 && !customers.is_empty() {
            let earlier = (x < 0.06 && !account_regs.is_empty())
                .then(|| account_regs[rng.random_range(0..account_regs.len())]);
            let account = match earlier {
                Some(r) => {
                    let first = &m.regs[r as usize];
                    let account = match first.customer {
                        Customer::Account(a) => a,
                        Customer::Prospect(_) => customers[0],
                    };
                    (partner, rep) = m.other_partner(&mut rng, first.partner);
                    account
                }
                None => {
                    // Skip the anchors' accounts unless there is nothing else.
                    let a = if customers.len() > reserved {
                        customers[reserved + next_customer % (customers.len() - reserved)]
                    } else {
                        customers[next_customer % customers.len()]
                    };
                    next_customer += 1;
                    a
                }
            };
            (Customer::Account(account), random_variant(&mut rng))
        } else {
            let earlier = (chance(&mut rng, 0.3) && !prospect_regs.is_empty())
                .then(|| prospect_regs[rng.random_range(0..prospect_regs.len())]);
            match earlier {
                Some(r) => {
                    let first = &m.regs[r as usize];
                    let customer = first.customer;
                    (partner, rep) = m.other_partner(&mut rng, first.partner);
                    (customer, random_variant(&mut rng))
                }
                None => {
                    prospects.push(gen_.generate(&mut rng, CompanyKind::Customer));
                    (
                        Customer::Prospect(prospects.len() as u32 - 1),
                        Variant::Exact,
                    )
                }
            }
        };
        let tier = m.partners[partner as usize].tier;
        let (submitted, approved, expires) = reg_times(&mut rng, status, tier, now);
        let co = match customer {
            Customer::Account(a) => &m.accounts[a as usize].co,
            Customer::Prospect(q) => &prospects[q as usize],
        };
        let customer_name = name_variant(&mut rng, &mut gen_, co, variant);
        let y = rng.random::<f64>();
        let customer_domain = if y < 0.02 {
            Some(pick(&mut rng, &FREEMAIL).to_string())
        } else if y < 0.60 {
            Some(domain_variant(&mut rng, &co.domain))
        } else {
            None
        };
        let account_id_set = matches!(customer, Customer::Account(_)) && chance(&mut rng, 0.15);
        let amount = chance(&mut rng, 0.7).then(|| amount_cents(&mut rng));
        let idx = m.regs.len() as u32;
        match customer {
            Customer::Account(_) => {
                account_regs.push(idx);
                m.linkable.push(idx);
            }
            Customer::Prospect(_) if variant == Variant::Exact => prospect_regs.push(idx),
            Customer::Prospect(_) => {}
        }
        m.regs.push(Reg {
            partner,
            rep,
            rep_as_email: chance(&mut rng, 0.5),
            customer,
            variant,
            customer_name,
            customer_domain,
            account_id_set,
            status,
            submitted,
            approved,
            expires,
            amount,
            opp_link: None,
            anchor: false,
        });
    }

    // Plans: opportunities the registrations point at, and the anchor opportunities.
    let mut rng = stream(p.seed, 4);
    let mut plans: Vec<Plan> = Vec::new();
    if anchors_on {
        let mut dvp = None;
        let mut bypass = None;
        for (i, r) in m.regs.iter().enumerate() {
            if !r.anchor {
                continue;
            }
            match (r.customer, r.status) {
                (Customer::Account(a), RegStatus::Approved) if a == anchor_accounts[0] => {
                    dvp = r.approved.map(|t| (a, t));
                }
                (Customer::Account(a), RegStatus::Approved) if a == anchor_accounts[1] => {
                    bypass = Some(i as u32);
                }
                _ => {}
            }
        }
        if let Some((a, approved)) = dvp {
            plans.push(Plan::DirectOpen(a));
            plans.push(Plan::DirectWon(a, approved + 2 * DAY));
        }
        if let Some(r) = bypass {
            plans.push(Plan::Bypass(r));
        }
    }
    for (i, r) in m.regs.iter().enumerate() {
        if !r.anchor
            && matches!(r.customer, Customer::Account(_))
            && matches!(r.status, RegStatus::Approved | RegStatus::Won)
            && chance(&mut rng, 0.2)
        {
            plans.push(Plan::Linked(i as u32));
        }
    }
    plans.truncate(p.opportunities);
    let at = index::sample(&mut rng, p.opportunities, plans.len());
    let mut placed: Vec<(u32, Plan)> = at.iter().map(|i| i as u32).zip(plans).collect();
    placed.sort_unstable_by_key(|&(i, _)| i);
    for &(i, plan) in &placed {
        if let Plan::Linked(r) = plan {
            m.regs[r as usize].opp_link = Some(i);
        }
    }
    m.plans = placed;
    let mut home = vec![u32::MAX; m.accounts.len()];
    for r in &m.regs {
        if let Customer::Account(a) = r.customer
            && home[a as usize] == u32::MAX
        {
            home[a as usize] = r.partner;
        }
    }
    for h in &mut home {
        if *h == u32::MAX {
            *h = m.random_partner(&mut rng).0;
        }
    }
    m.home_partner = home;
    Ok(m)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    DvpA,
    BypassB,
    PvpC1,
    PvpC2,
    Expiring,
    ExpiredStatus,
    ExpiredApproved,
    ProspectU1,
    ProspectU2,
}

const ANCHORS: [Anchor; 9] = [
    Anchor::DvpA,
    Anchor::BypassB,
    Anchor::PvpC1,
    Anchor::PvpC2,
    Anchor::Expiring,
    Anchor::ExpiredStatus,
    Anchor::ExpiredApproved,
    Anchor::ProspectU1,
    Anchor::ProspectU2,
];

impl Model {
    /// The partner of a uniformly chosen rep (skewed like reps), and that rep.
    fn random_partner(&self, rng: &mut ChaCha8Rng) -> (u32, Option<u32>) {
        if self.reps.is_empty() {
            (rng.random_range(0..self.partners.len() as u32), None)
        } else {
            let r = rng.random_range(0..self.reps.len() as u32);
            (self.reps[r as usize].partner, Some(r))
        }
    }

    /// A partner other than `not` (when there is one), and one of its reps.
    fn other_partner(&self, rng: &mut ChaCha8Rng, not: u32) -> (u32, Option<u32>) {
        if self.partners.len() < 2 {
            return (not, self.rep_of(rng, not));
        }
        for _ in 0..16 {
            let (q, r) = self.random_partner(rng);
            if q != not {
                return (q, r);
            }
        }
        let n = self.partners.len() as u32;
        let q = (not + 1 + rng.random_range(0..n - 1)) % n;
        (q, self.rep_of(rng, q))
    }

    fn rep_of(&self, rng: &mut ChaCha8Rng, partner: u32) -> Option<u32> {
        let lo = self.rep_start[partner as usize] as usize;
        let hi = self.rep_start[partner as usize + 1] as usize;
        (hi > lo).then(|| self.partner_reps[rng.random_range(lo..hi)])
    }

    fn anchor_reg(
        &self,
        a: Anchor,
        partner: u32,
        rep: Option<u32>,
        accounts: &[u32],
        prospect: &Company,
    ) -> Reg {
        let now = self.now;
        let days = |d: i64| now + d * DAY;
        let (customer, status, submitted, approved, expires) = match a {
            Anchor::DvpA => (
                Customer::Account(accounts[0]),
                RegStatus::Approved,
                days(-25),
                Some(days(-23)),
                Some(days(120)),
            ),
            Anchor::BypassB => (
                Customer::Account(accounts[1]),
                RegStatus::Approved,
                days(-15),
                Some(days(-14)),
                Some(days(150)),
            ),
            Anchor::PvpC1 => (
                Customer::Account(accounts[2]),
                RegStatus::Approved,
                days(-40),
                Some(days(-38)),
                Some(days(100)),
            ),
            Anchor::PvpC2 => (
                Customer::Account(accounts[2]),
                RegStatus::Submitted,
                days(-3),
                None,
                None,
            ),
            Anchor::Expiring => (
                Customer::Account(accounts[3]),
                RegStatus::Approved,
                days(-95),
                Some(days(-93)),
                Some(days(6)),
            ),
            Anchor::ExpiredStatus => (
                Customer::Account(accounts[3]),
                RegStatus::Expired,
                days(-130),
                Some(days(-128)),
                Some(days(-10)),
            ),
            Anchor::ExpiredApproved => (
                Customer::Account(accounts[3]),
                RegStatus::Approved,
                days(-70),
                Some(days(-68)),
                Some(days(-3)),
            ),
            Anchor::ProspectU1 => (
                Customer::Prospect(0),
                RegStatus::Submitted,
                days(-10),
                None,
                None,
            ),
            Anchor::ProspectU2 => (
                Customer::Prospect(0),
                RegStatus::Submitted,
                days(-4),
                None,
                None,
            ),
        };
        let (customer_name, customer_domain) = match customer {
            Customer::Account(acc) => {
                let co = &self.accounts[acc as usize].co;
                (co.name.clone(), Some(co.domain.clone()))
            }
            Customer::Prospect(_) => {
                let d = if a == Anchor::ProspectU2 {
                    format!("https://www.{}/", prospect.domain)
                } else {
                    prospect.domain.clone()
                };
                (prospect.name.clone(), Some(d))
            }
        };
        Reg {
            partner,
            rep,
            rep_as_email: false,
            customer,
            variant: Variant::Exact,
            customer_name,
            customer_domain,
            account_id_set: matches!(customer, Customer::Account(_)),
            status,
            submitted,
            approved,
            expires,
            amount: Some(2_500_000),
            opp_link: None,
            anchor: true,
        }
    }
}

/// submitted_at, approved_at, expires_at for a random registration.
fn reg_times(
    rng: &mut ChaCha8Rng,
    status: RegStatus,
    tier: &str,
    now: i64,
) -> (i64, Option<i64>, Option<i64>) {
    let year = 365 * DAY;
    let explicit = matches!(
        status,
        RegStatus::Approved | RegStatus::Won | RegStatus::Lost | RegStatus::Expired
    ) && chance(rng, 0.3);
    let window = if explicit {
        pick(rng, &[60, 90, 180]) * DAY
    } else {
        implicit_window(tier)
    };
    // The earliest expiry that keeps submitted_at within the last 12 months.
    let oldest_expiry = now - (year - 10 * DAY) + window;
    let from_expiry = |rng: &mut ChaCha8Rng, expiry: i64| {
        let approved = expiry - window;
        let submitted = approved - minutes_between(rng, 0, 10 * DAY);
        (submitted, Some(approved), explicit.then_some(expiry))
    };
    match status {
        RegStatus::Approved => {
            let x = rng.random::<f64>();
            let expiry = if x < 0.12 {
                now + minutes_between(rng, HOUR, 14 * DAY - HOUR)
            } else if x < 0.65 {
                now + minutes_between(rng, 14 * DAY + HOUR, window - HOUR)
            } else if x < 0.73 {
                now - minutes_between(rng, HOUR, 30 * DAY - HOUR)
            } else {
                minutes_between(rng, oldest_expiry, now - 30 * DAY - HOUR)
            };
            from_expiry(rng, expiry)
        }
        RegStatus::Expired => {
            let expiry = if chance(rng, 0.2) {
                now - minutes_between(rng, HOUR, 30 * DAY - HOUR)
            } else {
                minutes_between(rng, oldest_expiry, now - 30 * DAY - HOUR)
            };
            from_expiry(rng, expiry)
        }
        RegStatus::Won | RegStatus::Lost => {
            let submitted = now - minutes_between(rng, HOUR, year);
            let approved = (submitted + minutes_between(rng, 0, 10 * DAY)).min(now);
            (
                submitted,
                Some(approved),
                explicit.then_some(approved + window),
            )
        }
        RegStatus::Submitted => {
            let back = if chance(rng, 0.7) { 45 * DAY } else { year };
            (now - minutes_between(rng, HOUR, back), None, None)
        }
        RegStatus::Rejected | RegStatus::Cancelled => {
            (now - minutes_between(rng, HOUR, year), None, None)
        }
    }
}

fn random_variant(rng: &mut ChaCha8Rng) -> Variant {
    // 40 / 25 / 15 / 10 / 5 / 5 of all registrations on existing accounts.
    pick_weighted(
        rng,
        &[
            (Variant::Exact, 40),
            (Variant::Legal, 25),
            (Variant::Case, 15),
            (Variant::Typo, 10),
            (Variant::TheAnd, 5),
            (Variant::Different, 5),
        ],
    )
}

/// The customer name a partner typed for company `co`.
fn name_variant(
    rng: &mut ChaCha8Rng,
    gen_: &mut CompanyGen,
    co: &Company,
    variant: Variant,
) -> String {
    match variant {
        Variant::Exact => co.name.clone(),
        Variant::Legal => match co.legal {
            Some(_) if chance(rng, 0.5) => co.core.clone(),
            Some(l) => {
                let mut other = pick_index_weighted(rng, &LEGAL);
                if other == l {
                    other = (other + 1) % LEGAL.len();
                }
                with_legal(&co.core, Some(other))
            }
            None => with_legal(&co.core, Some(pick_index_weighted(rng, &LEGAL))),
        },
        Variant::Case => case_variant(rng, co),
        Variant::Typo => match typo(rng, &co.core) {
            Some(core) => with_legal(&core, co.legal),
            None => case_variant(rng, co),
        },
        Variant::TheAnd => {
            if co.core.contains(" & ") {
                co.name.replacen(" & ", " and ", 1)
            } else {
                format!("The {}", co.name)
            }
        }
        Variant::Different => {
            let words: Vec<&str> = co.core.split(' ').filter(|w| *w != "&").collect();
            if words.len() >= 2 && chance(rng, 0.5) {
                let initials: String = words
                    .iter()
                    .filter_map(|w| w.chars().next())
                    .map(|c| c.to_ascii_uppercase())
                    .collect();
                with_legal(&initials, co.legal)
            } else {
                let original = norm_name(&co.name);
                for _ in 0..8 {
                    let syllables = if chance(rng, 0.5) { 2 } else { 3 };
                    let mut core = gen_.word(rng, syllables);
                    for w in words.iter().skip(1) {
                        core.push(' ');
                        core.push_str(w);
                    }
                    if norm_name(&core) != original {
                        return with_legal(&core, co.legal);
                    }
                }
                format!("{} Holdings", co.core)
            }
        }
    }
}

fn case_variant(rng: &mut ChaCha8Rng, co: &Company) -> String {
    let legal = co.legal.map(|l| LEGAL[l].0);
    let mut options: Vec<u8> = vec![0, 1];
    if legal.is_some() {
        options.push(2);
    }
    if legal.is_some_and(|l| l.contains('.')) {
        options.push(3);
    }
    if co.core.contains(' ') && !co.core.contains('&') {
        options.push(4);
    }
    match pick(rng, &options) {
        0 => co.name.to_uppercase(),
        1 => co.name.to_lowercase(),
        2 => format!("{}, {}", co.core, legal.unwrap_or_default()),
        3 => format!("{} {}", co.core, legal.unwrap_or_default().replace('.', "")),
        _ => with_legal(&co.core.replace(' ', "-"), co.legal),
    }
}

/// A one-character typo at position >= 4 of a word of length >= 6 (none if there is none).
fn typo(rng: &mut ChaCha8Rng, core: &str) -> Option<String> {
    let words: Vec<&str> = core.split(' ').collect();
    let candidates: Vec<usize> = words
        .iter()
        .enumerate()
        .filter(|(_, w)| w.len() >= 6 && w.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let wi = pick(rng, &candidates);
    let mut w: Vec<u8> = words[wi].as_bytes().to_vec();
    let pos = rng.random_range(4..w.len());
    let original = w.clone();
    match rng.random_range(0..4) {
        0 => {
            let i = if pos + 1 < w.len() { pos } else { pos - 1 };
            w.swap(i, i + 1);
        }
        1 => {
            w.remove(pos);
        }
        2 => {
            let c = w[pos];
            w.insert(pos, c);
        }
        _ => {}
    }
    if w == original {
        // Substitution (also the fallback when a swap changed nothing).
        let c = original[pos];
        let mut n = b'a' + rng.random_range(0..25u8);
        if n >= c.to_ascii_lowercase() {
            n += 1;
        }
        w[pos] = n.min(b'z');
        if w == original {
            w[pos] = if c == b'a' { b'e' } else { b'a' };
        }
    }
    let word = String::from_utf8_lossy(&w).into_owned();
    let mut out = String::with_capacity(core.len() + 1);
    for (i, original) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(if i == wi { &word } else { original });
    }
    Some(out)
}

fn domain_variant(rng: &mut ChaCha8Rng, domain: &str) -> String {
    match pick_weighted(
        rng,
        &[
            (0u8, 35),
            (1, 10),
            (2, 10),
            (3, 15),
            (4, 15),
            (5, 10),
            (6, 5),
        ],
    ) {
        0 => domain.to_string(),
        1 => domain.to_uppercase(),
        2 => format!(
            "{}{domain}",
            pick(rng, &["eu.shop.", "shop.", "eu.", "portal.", "app."])
        ),
        3 => format!("www.{domain}"),
        4 => format!(
            "{}{domain}{}",
            pick(rng, &["https://", "https://www.", "http://"]),
            pick(rng, &["", "/"])
        ),
        5 => format!("{domain}{}", pick(rng, &["/contact", "/en/", "/about-us"])),
        _ => format!(
            "{}{domain}:{}",
            pick(rng, &["", "https://"]),
            pick(rng, &["443", "8443", "8080"])
        ),
    }
}

fn amount_cents(rng: &mut ChaCha8Rng) -> u64 {
    let (lo, hi) = (1_000f64.ln(), 250_000f64.ln());
    let units = (lo + rng.random::<f64>() * (hi - lo)).exp();
    let cents = if chance(rng, 0.4) {
        (units / 100.0).round() * 10_000.0
    } else {
        (units * 100.0).round()
    };
    (cents as u64).clamp(100_000, 25_000_000)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Id formats: prefix and zero-padded width per entity.
struct Ids {
    account: usize,
    partner: usize,
    rep: usize,
    opp: usize,
    reg: usize,
    user: usize,
}

fn digits(n: usize) -> usize {
    n.max(1).to_string().len()
}

impl Ids {
    fn new(p: &SynthParams, users: usize) -> Self {
        Ids {
            account: digits(p.accounts),
            partner: digits(p.partners),
            rep: digits(p.reps),
            opp: digits(p.opportunities),
            reg: digits(p.registrations),
            user: digits(users),
        }
    }
}

fn push_uint(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (tmp.len() - i)..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// `prefix` + the 1-based id of 0-based index `i`.
fn push_id(buf: &mut Vec<u8>, prefix: &str, i: u32, width: usize) {
    buf.extend_from_slice(prefix.as_bytes());
    push_uint(buf, u64::from(i) + 1, width);
}

fn push_date(buf: &mut Vec<u8>, t: i64) {
    let date = chrono::DateTime::from_timestamp(t.div_euclid(DAY) * DAY, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    push_uint(buf, u64::try_from(date.year()).unwrap_or(0), 4);
    buf.push(b'-');
    push_uint(buf, u64::from(date.month()), 2);
    buf.push(b'-');
    push_uint(buf, u64::from(date.day()), 2);
}

fn push_ts(buf: &mut Vec<u8>, t: i64) {
    push_date(buf, t);
    let s = t.rem_euclid(DAY);
    buf.push(b'T');
    push_uint(buf, (s / 3600) as u64, 2);
    buf.push(b':');
    push_uint(buf, (s / 60 % 60) as u64, 2);
    buf.push(b':');
    push_uint(buf, (s % 60) as u64, 2);
    buf.push(b'Z');
}

fn push_amount(buf: &mut Vec<u8>, cents: u64) {
    push_uint(buf, cents / 100, 1);
    buf.push(b'.');
    push_uint(buf, cents % 100, 2);
}

/// One CSV record built in a reused buffer: fields are pushed, then written at once.
struct Rec {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Rec {
    fn new() -> Self {
        Rec {
            buf: Vec::with_capacity(512),
            ends: Vec::with_capacity(16),
        }
    }
    /// Ends the field being pushed into `buf`.
    fn end(&mut self) {
        self.ends.push(self.buf.len());
    }
    fn str(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
        self.end();
    }
    fn opt_str(&mut self, s: Option<&str>) {
        self.str(s.unwrap_or(""));
    }
    fn id(&mut self, prefix: &str, i: u32, width: usize) {
        push_id(&mut self.buf, prefix, i, width);
        self.end();
    }
    fn opt_id(&mut self, prefix: &str, i: Option<u32>, width: usize) {
        if let Some(i) = i {
            push_id(&mut self.buf, prefix, i, width);
        }
        self.end();
    }
    fn ts(&mut self, t: Option<i64>) {
        if let Some(t) = t {
            push_ts(&mut self.buf, t);
        }
        self.end();
    }
    fn date(&mut self, t: Option<i64>) {
        if let Some(t) = t {
            push_date(&mut self.buf, t);
        }
        self.end();
    }
    fn amount(&mut self, cents: Option<u64>) {
        if let Some(c) = cents {
            push_amount(&mut self.buf, c);
        }
        self.end();
    }
    fn write<W: Write>(&mut self, w: &mut csv::Writer<W>) -> Result<()> {
        let mut start = 0;
        let buf = &self.buf;
        w.write_record(self.ends.iter().map(|&e| {
            let field = &buf[start..e];
            start = e;
            field
        }))?;
        self.buf.clear();
        self.ends.clear();
        Ok(())
    }
}

fn writer(path: &Path) -> Result<csv::Writer<BufWriter<File>>> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(csv::WriterBuilder::new()
        .buffer_capacity(1 << 16)
        .from_writer(BufWriter::with_capacity(1 << 16, file)))
}

fn finish(mut w: csv::Writer<BufWriter<File>>, path: &Path) -> Result<()> {
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    let inner = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?;
    inner
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?;
    Ok(())
}

fn write_accounts(path: &Path, m: &Model, ids: &Ids) -> Result<()> {
    let mut w = writer(path)?;
    w.write_record(ACCOUNTS_HEADER)?;
    let mut rec = Rec::new();
    for (i, a) in m.accounts.iter().enumerate() {
        rec.id("A-", i as u32, ids.account);
        rec.str(&a.co.name);
        if a.freemail {
            rec.str("gmail.com");
        } else {
            rec.opt_str(a.show_domain.then_some(a.co.domain.as_str()));
        }
        if let Some(v) = a.website {
            let d = &a.co.domain;
            let b = &mut rec.buf;
            let (pre, post) = match v {
                0 => ("https://www.", "/about"),
                1 => ("https://", ""),
                2 => ("http://www.", "/"),
                3 => ("www.", ""),
                4 => ("https://www.", "/en-us/home"),
                _ => ("https://", ":443/"),
            };
            b.extend_from_slice(pre.as_bytes());
            b.extend_from_slice(d.as_bytes());
            b.extend_from_slice(post.as_bytes());
        }
        rec.end();
        rec.id("U-", a.owner, ids.user);
        rec.write(&mut w)?;
    }
    finish(w, path)
}

fn write_partners(path: &Path, m: &Model, ids: &Ids) -> Result<()> {
    let mut w = writer(path)?;
    w.write_record(PARTNERS_HEADER)?;
    let mut rec = Rec::new();
    for (i, p) in m.partners.iter().enumerate() {
        rec.id("P-", i as u32, ids.partner);
        rec.str(&p.co.name);
        rec.str(p.tier);
        rec.opt_id("A-", p.account, ids.account);
        rec.str(&p.co.domain);
        rec.write(&mut w)?;
    }
    finish(w, path)
}

/// `first.last[n]@partner-domain`, lower-case, into `buf`.
fn push_rep_email(buf: &mut Vec<u8>, m: &Model, r: &Rep) {
    for c in FIRST_NAMES[r.first as usize].bytes() {
        buf.push(c.to_ascii_lowercase());
    }
    buf.push(b'.');
    for c in LAST_NAMES[r.last as usize].bytes() {
        buf.push(c.to_ascii_lowercase());
    }
    if r.dup > 0 {
        push_uint(buf, u64::from(r.dup) + 1, 1);
    }
    buf.push(b'@');
    buf.extend_from_slice(m.partners[r.partner as usize].co.domain.as_bytes());
}

fn write_reps(path: &Path, m: &Model, ids: &Ids) -> Result<()> {
    let mut w = writer(path)?;
    w.write_record(REPS_HEADER)?;
    let mut rec = Rec::new();
    for (i, r) in m.reps.iter().enumerate() {
        rec.id("PR-", i as u32, ids.rep);
        rec.id("P-", r.partner, ids.partner);
        push_rep_email(&mut rec.buf, m, r);
        rec.end();
        rec.buf
            .extend_from_slice(FIRST_NAMES[r.first as usize].as_bytes());
        rec.buf.push(b' ');
        rec.buf
            .extend_from_slice(LAST_NAMES[r.last as usize].as_bytes());
        rec.end();
        rec.str(r.active_text);
        rec.date(r.joined);
        rec.date(r.left);
        rec.write(&mut w)?;
    }
    finish(w, path)
}

fn write_users(path: &Path, seed: u64, users: usize, ids: &Ids) -> Result<()> {
    let mut rng = stream(seed, 6);
    let mut w = writer(path)?;
    w.write_record(USERS_HEADER)?;
    let mut rec = Rec::new();
    let mut seen: HashMap<(usize, usize), u32> = HashMap::new();
    for i in 0..users {
        let f = rng.random_range(0..FIRST_NAMES.len());
        let l = rng.random_range(0..LAST_NAMES.len());
        let n = seen.entry((f, l)).or_insert(0);
        *n += 1;
        rec.id("U-", i as u32, ids.user);
        rec.buf.extend_from_slice(FIRST_NAMES[f].as_bytes());
        rec.buf.push(b' ');
        rec.buf.extend_from_slice(LAST_NAMES[l].as_bytes());
        rec.end();
        let local = format!("{}.{}", FIRST_NAMES[f], LAST_NAMES[l]).to_ascii_lowercase();
        rec.buf.extend_from_slice(local.as_bytes());
        if *n > 1 {
            push_uint(&mut rec.buf, u64::from(*n), 1);
        }
        rec.buf.push(b'@');
        rec.buf.extend_from_slice(VENDOR_DOMAIN.as_bytes());
        rec.end();
        rec.write(&mut w)?;
    }
    finish(w, path)
}

fn write_registrations(path: &Path, m: &Model, ids: &Ids) -> Result<()> {
    let mut w = writer(path)?;
    w.write_record(REGS_HEADER)?;
    let mut rec = Rec::new();
    for (i, r) in m.regs.iter().enumerate() {
        rec.id("R-", i as u32, ids.reg);
        rec.id("P-", r.partner, ids.partner);
        rec.str(&r.customer_name);
        rec.str(r.status.as_str());
        rec.ts(Some(r.submitted));
        if let Some(rep) = r.rep {
            if r.rep_as_email {
                push_rep_email(&mut rec.buf, m, &m.reps[rep as usize]);
            } else {
                push_id(&mut rec.buf, "PR-", rep, ids.rep);
            }
        }
        rec.end();
        rec.opt_str(r.customer_domain.as_deref());
        let account = match r.customer {
            Customer::Account(a) if r.account_id_set => Some(a),
            _ => None,
        };
        rec.opt_id("A-", account, ids.account);
        rec.opt_id("O-", r.opp_link, ids.opp);
        rec.ts(r.approved);
        rec.ts(r.expires);
        rec.amount(r.amount);
        rec.write(&mut w)?;
    }
    finish(w, path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OppStatus {
    Open,
    Won,
    Lost,
}

/// Everything about one opportunity row except the fixed per-row picks.
struct Opp {
    account: u32,
    status: OppStatus,
    created: i64,
    close: Option<i64>,
    partner: Option<u32>,
    rep: Option<u32>,
    reg_link: Option<u32>,
    /// Linked to a registration (either direction), so it may lose its partner.
    linked: bool,
}

fn random_opp_status(rng: &mut ChaCha8Rng) -> OppStatus {
    pick_weighted(
        rng,
        &[
            (OppStatus::Open, 35),
            (OppStatus::Won, 30),
            (OppStatus::Lost, 35),
        ],
    )
}

impl Model {
    fn skewed_account(&self, rng: &mut ChaCha8Rng) -> u32 {
        let n = self.accounts.len();
        if chance(rng, 0.7) {
            rng.random_range(0..n as u32)
        } else {
            let u = rng.random::<f64>();
            let rank = ((u * u) * n as f64) as usize;
            self.account_rank[rank.min(n - 1)]
        }
    }

    fn reg_account(&self, r: u32) -> u32 {
        match self.regs[r as usize].customer {
            Customer::Account(a) => a,
            Customer::Prospect(_) => 0,
        }
    }

    fn opp_from_plan(&self, rng: &mut ChaCha8Rng, plan: Plan) -> Opp {
        let now = self.now;
        match plan {
            Plan::Linked(r) => {
                let reg = &self.regs[r as usize];
                let approved = reg.approved.unwrap_or(reg.submitted);
                let created = approved + minutes_between(rng, 0, (now - approved).min(20 * DAY));
                let status = match reg.status {
                    RegStatus::Won => OppStatus::Won,
                    RegStatus::Lost => OppStatus::Lost,
                    _ => pick_weighted(
                        rng,
                        &[
                            (OppStatus::Open, 70),
                            (OppStatus::Won, 20),
                            (OppStatus::Lost, 10),
                        ],
                    ),
                };
                Opp {
                    account: self.reg_account(r),
                    status,
                    created,
                    close: None,
                    partner: Some(reg.partner),
                    rep: if chance(rng, 0.7) {
                        reg.rep
                    } else {
                        self.rep_of(rng, reg.partner)
                    },
                    reg_link: None,
                    linked: true,
                }
            }
            Plan::DirectOpen(a) => Opp {
                account: a,
                status: OppStatus::Open,
                created: now - minutes_between(rng, DAY, 60 * DAY),
                close: None,
                partner: None,
                rep: None,
                reg_link: None,
                linked: false,
            },
            Plan::DirectWon(a, close) => Opp {
                account: a,
                status: OppStatus::Won,
                created: close - 30 * DAY,
                close: Some(close),
                partner: None,
                rep: None,
                reg_link: None,
                linked: false,
            },
            Plan::Bypass(r) => {
                let reg = &self.regs[r as usize];
                Opp {
                    account: self.reg_account(r),
                    status: OppStatus::Open,
                    created: reg.approved.unwrap_or(reg.submitted) + DAY,
                    close: None,
                    partner: None,
                    rep: None,
                    reg_link: Some(r),
                    linked: false,
                }
            }
        }
    }

    fn random_opp(&self, rng: &mut ChaCha8Rng) -> Opp {
        let now = self.now;
        let status = random_opp_status(rng);
        let created = now - minutes_between(rng, 0, 730 * DAY);
        if chance(rng, 0.7) {
            return Opp {
                account: self.skewed_account(rng),
                status,
                created,
                close: None,
                partner: None,
                rep: None,
                reg_link: None,
                linked: false,
            };
        }
        if !self.linkable.is_empty() && chance(rng, 0.3) {
            let r = self.linkable[rng.random_range(0..self.linkable.len())];
            let reg = &self.regs[r as usize];
            let link = chance(rng, 0.5);
            return Opp {
                account: self.reg_account(r),
                status,
                created: (reg.submitted + minutes_between(rng, 0, 30 * DAY)).min(now),
                close: None,
                partner: Some(reg.partner),
                rep: if chance(rng, 0.7) {
                    reg.rep
                } else {
                    self.rep_of(rng, reg.partner)
                },
                reg_link: link.then_some(r),
                linked: link,
            };
        }
        let account = self.skewed_account(rng);
        let (partner, rep) = if chance(rng, 0.85) {
            let q = self.home_partner[account as usize];
            (q, self.rep_of(rng, q))
        } else {
            self.random_partner(rng)
        };
        Opp {
            account,
            status,
            created,
            close: None,
            partner: Some(partner),
            rep,
            reg_link: None,
            linked: false,
        }
    }
}

/// Opportunities per chunk. Each chunk draws from its own random stream, so the bytes do not
/// depend on how many threads generate them.
const OPP_CHUNK: usize = 1 << 15;
/// Chunk `c` uses stream `OPP_STREAM + c`.
const OPP_STREAM: u64 = 1 << 32;

fn write_opportunities(
    path: &Path,
    m: &Model,
    p: &SynthParams,
    ids: &Ids,
    camp: Option<&review::Campaigns>,
) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    write_opportunities_on(path, m, p, ids, camp, workers)
}

/// As [`write_opportunities`], on `workers` threads.
fn write_opportunities_on(
    path: &Path,
    m: &Model,
    p: &SynthParams,
    ids: &Ids,
    camp: Option<&review::Campaigns>,
    workers: usize,
) -> Result<()> {
    let mut header = writer(path)?;
    match camp {
        None => header.write_record(OPPS_HEADER)?,
        Some(_) => header.write_record(OPPS_HEADER.iter().chain(&["campaign_id"]))?,
    }
    let mut out = header
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?;
    let chunks = p.opportunities.div_ceil(OPP_CHUNK);
    let workers = workers.clamp(1, chunks.max(1));
    std::thread::scope(|s| -> Result<()> {
        let mut receivers = Vec::with_capacity(workers);
        for k in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>>>(1);
            receivers.push(rx);
            s.spawn(move || {
                for c in (k..chunks).step_by(workers) {
                    let chunk = opportunity_chunk(m, p, ids, camp, c);
                    let failed = chunk.is_err();
                    if tx.send(chunk).is_err() || failed {
                        break;
                    }
                }
            });
        }
        for c in 0..chunks {
            let bytes = receivers[c % workers]
                .recv()
                .map_err(|_| anyhow::anyhow!("opportunity generator stopped"))??;
            out.write_all(&bytes)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// The CSV rows (no header) of opportunities `c * OPP_CHUNK ..`.
fn opportunity_chunk(
    m: &Model,
    p: &SynthParams,
    ids: &Ids,
    camp: Option<&review::Campaigns>,
    c: usize,
) -> Result<Vec<u8>> {
    let mut rng = stream(p.seed, OPP_STREAM + c as u64);
    let mut camp_rng = camp.map(|camp| camp.chunk_stream(OPP_STREAM + c as u64));
    let lo = c * OPP_CHUNK;
    let hi = (lo + OPP_CHUNK).min(p.opportunities);
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(1 << 16)
        .from_writer(Vec::with_capacity((hi - lo) * 140));
    let mut rec = Rec::new();
    let first_plan = m.plans.partition_point(|&(at, _)| (at as usize) < lo);
    let mut plans = m.plans[first_plan..].iter().peekable();
    let now = m.now;
    for i in lo..hi {
        let plan = plans
            .next_if(|&&(at, _)| at as usize == i)
            .map(|&(_, plan)| plan);
        let mut o = match plan {
            Some(plan) => m.opp_from_plan(&mut rng, plan),
            None => m.random_opp(&mut rng),
        };
        if o.linked && chance(&mut rng, 0.03) {
            // The opportunity lost its partner.
            match o.partner {
                Some(q) if chance(&mut rng, 0.5) => {
                    let (other, rep) = m.other_partner(&mut rng, q);
                    o.partner = Some(other);
                    o.rep = rep;
                }
                _ => {
                    o.partner = None;
                    o.rep = None;
                }
            }
        }
        let close = match (o.status, o.close) {
            (_, Some(c)) => c,
            (OppStatus::Open, None) => now + minutes_between(&mut rng, DAY, 180 * DAY),
            (_, None) => o.created + minutes_between(&mut rng, 0, now - o.created),
        };
        if let (Some(camp), Some(camp_rng)) = (camp, camp_rng.as_mut()) {
            camp.reassign(
                camp_rng,
                m,
                &mut o.partner,
                &mut o.rep,
                o.created.max(close),
            );
        }

        rec.id("O-", i as u32, ids.opp);
        rec.id("A-", o.account, ids.account);
        rec.str(match o.status {
            OppStatus::Open => "open",
            OppStatus::Won => "won",
            OppStatus::Lost => "lost",
        });
        rec.ts(Some(o.created));
        rec.buf
            .extend_from_slice(m.accounts[o.account as usize].co.name.as_bytes());
        rec.buf.extend_from_slice(b" - ");
        rec.buf
            .extend_from_slice(pick(&mut rng, &DEAL_TYPES).as_bytes());
        rec.end();
        let owner = (o.partner.is_none() || chance(&mut rng, 0.5))
            .then(|| rng.random_range(0..m.users as u32));
        rec.opt_id("U-", owner, ids.user);
        rec.str(match o.status {
            OppStatus::Open => pick_weighted(&mut rng, &OPEN_STAGES),
            OppStatus::Won => "Closed Won",
            OppStatus::Lost => "Closed Lost",
        });
        rec.amount(Some(amount_cents(&mut rng)));
        rec.str(pick_weighted(
            &mut rng,
            &[("", 80), ("USD", 10), ("EUR", 6), ("GBP", 4)],
        ));
        rec.date(Some(close));
        rec.opt_id("P-", o.partner, ids.partner);
        if let (Some(_), Some(rep)) = (o.partner, o.rep) {
            if chance(&mut rng, 0.5) {
                push_id(&mut rec.buf, "PR-", rep, ids.rep);
            } else {
                let start = rec.buf.len();
                push_rep_email(&mut rec.buf, m, &m.reps[rep as usize]);
                // Random upper-case letters: each word's first letter, and some others.
                let mut word_start = true;
                for b in &mut rec.buf[start..] {
                    if b.is_ascii_lowercase() && (word_start || rng.random::<u8>() < 32) {
                        *b = b.to_ascii_uppercase();
                    }
                    word_start = matches!(*b, b'.' | b'@');
                }
            }
        }
        rec.end();
        rec.opt_id("R-", o.reg_link, ids.reg);
        if let (Some(camp), Some(camp_rng)) = (camp, camp_rng.as_mut()) {
            camp.push_campaign(camp_rng, &mut rec, o.partner, o.created, ids);
        }
        rec.write(&mut w)?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("generating opportunities: {}", e.error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, SecondsFormat, TimeZone};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const FILES: [&str; 6] = [
        "accounts.csv",
        "partners.csv",
        "partner_reps.csv",
        "opportunities.csv",
        "registrations.csv",
        "users.csv",
    ];

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 9, 30, 15).unwrap()
    }

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!(
                "channel-sync-synth-{}-{tag}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    struct Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    }

    impl Table {
        fn read(dir: &Path, file: &str) -> Table {
            let mut r = csv::Reader::from_path(dir.join(file)).unwrap();
            let header = r.headers().unwrap().iter().map(str::to_string).collect();
            let rows = r
                .records()
                .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
                .collect();
            Table { header, rows }
        }
        fn col(&self, name: &str) -> usize {
            self.header.iter().position(|h| h == name).unwrap()
        }
        /// The values of column `name`, one per row.
        fn values(&self, name: &str) -> Vec<&str> {
            let c = self.col(name);
            self.rows.iter().map(|r| r[c].as_str()).collect()
        }
    }

    fn ts(s: &str) -> i64 {
        assert!(s.ends_with('Z'), "not UTC: {s}");
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("bad timestamp {s:?}: {e}"))
            .timestamp()
    }

    fn date(s: &str) -> i64 {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .unwrap_or_else(|e| panic!("bad date {s:?}: {e}"))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn check_id(id: &str, prefix: &str, count: usize) {
        let n = id
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{id} lacks {prefix}"));
        assert_eq!(n.len(), digits(count), "{id}: width");
        let n: usize = n.parse().unwrap();
        assert!(n >= 1 && n <= count, "{id} out of range");
    }

    /// Parses every file back and checks SPEC §2 validity and referential integrity.
    fn validate(dir: &Path, p: &SynthParams, s: &SynthSummary) {
        let now = p.now.timestamp();
        let accounts = Table::read(dir, "accounts.csv");
        let partners = Table::read(dir, "partners.csv");
        let reps = Table::read(dir, "partner_reps.csv");
        let opps = Table::read(dir, "opportunities.csv");
        let regs = Table::read(dir, "registrations.csv");
        let users = Table::read(dir, "users.csv");
        assert_eq!(accounts.header, ACCOUNTS_HEADER);
        assert_eq!(partners.header, PARTNERS_HEADER);
        assert_eq!(reps.header, REPS_HEADER);
        assert_eq!(opps.header, OPPS_HEADER);
        assert_eq!(regs.header, REGS_HEADER);
        assert_eq!(users.header, USERS_HEADER);
        assert_eq!(accounts.rows.len(), s.accounts);
        assert_eq!(partners.rows.len(), s.partners);
        assert_eq!(reps.rows.len(), s.reps);
        assert_eq!(opps.rows.len(), s.opportunities);
        assert_eq!(regs.rows.len(), s.registrations);
        assert_eq!(users.rows.len(), s.users);
        assert_eq!(
            (
                s.accounts,
                s.opportunities,
                s.registrations,
                s.reps,
                s.partners
            ),
            (
                p.accounts,
                p.opportunities,
                p.registrations,
                p.reps,
                p.partners
            )
        );
        assert_eq!(s.users, (p.accounts / 2000).max(5));
        let bytes: u64 = FILES
            .iter()
            .map(|f| fs::metadata(dir.join(f)).unwrap().len())
            .sum();
        assert_eq!(s.bytes, bytes);

        let ids = |t: &Table, prefix: &str, count: usize| -> HashSet<String> {
            let ids: Vec<&str> = t.values("id");
            for (i, id) in ids.iter().enumerate() {
                check_id(id, prefix, count);
                assert_eq!(id[prefix.len()..].parse::<usize>().unwrap(), i + 1);
            }
            ids.iter().map(|s| s.to_string()).collect()
        };
        let account_ids = ids(&accounts, "A-", s.accounts);
        let partner_ids = ids(&partners, "P-", s.partners);
        let rep_ids = ids(&reps, "PR-", s.reps);
        let opp_ids = ids(&opps, "O-", s.opportunities);
        let reg_ids = ids(&regs, "R-", s.registrations);
        let user_ids = ids(&users, "U-", s.users);

        for row in &accounts.rows {
            assert!(!row[1].is_empty(), "account without name");
            assert!(user_ids.contains(&row[4]), "owner {}", row[4]);
        }
        let mut own_accounts = HashSet::new();
        for row in &partners.rows {
            assert!(!row[1].is_empty());
            assert!(["gold", "silver", "registered", ""].contains(&row[2].as_str()));
            if !row[3].is_empty() {
                assert!(account_ids.contains(&row[3]));
                assert!(own_accounts.insert(row[3].clone()), "shared own account");
            }
            assert!(row[4].contains('.'));
        }
        // Reps by partner: ids and lower-cased emails.
        let mut rep_of: HashMap<String, String> = HashMap::new();
        let mut emails = HashSet::new();
        for row in &reps.rows {
            assert!(partner_ids.contains(&row[1]));
            assert!(emails.insert(row[2].clone()), "duplicate email {}", row[2]);
            rep_of.insert(row[0].clone(), row[1].clone());
            rep_of.insert(row[2].to_lowercase(), row[1].clone());
            let active = row[4].to_lowercase();
            assert!(
                ["", "true", "false", "yes", "no", "1", "0"].contains(&active.as_str()),
                "active {active}"
            );
            let joined = (!row[5].is_empty()).then(|| date(&row[5]));
            let left = (!row[6].is_empty()).then(|| date(&row[6]));
            if let (Some(j), Some(l)) = (joined, left) {
                assert!(j <= l);
            }
            if left.is_some() {
                assert!(["false", "no", "0"].contains(&active.as_str()));
            }
            assert!(joined.is_none_or(|j| j <= now));
        }
        let rep_belongs = |rep: &str, partner: &str| {
            let key = if rep.starts_with("PR-") {
                assert!(rep_ids.contains(rep), "unknown rep {rep}");
                rep.to_string()
            } else {
                rep.to_lowercase()
            };
            rep_of.get(&key).is_some_and(|p| p == partner)
        };
        let mut opp_account: HashMap<&str, &str> = HashMap::new();
        for row in &opps.rows {
            assert!(account_ids.contains(&row[1]), "account {}", row[1]);
            opp_account.insert(&row[0], &row[1]);
            let created = ts(&row[3]);
            assert!(created <= now && created >= now - 731 * DAY);
            assert!(!row[4].is_empty());
            assert!(row[5].is_empty() || user_ids.contains(&row[5]));
            let amount: f64 = row[7].parse().unwrap();
            assert!((1000.0..=250_000.0).contains(&amount), "amount {amount}");
            assert_eq!(row[7].split('.').nth(1).map(str::len), Some(2));
            assert!(["", "USD", "EUR", "GBP"].contains(&row[8].as_str()));
            let close = date(&row[9]);
            match row[2].as_str() {
                "open" => {
                    assert!(close > now);
                    assert!(!["Closed Won", "Closed Lost"].contains(&row[6].as_str()));
                }
                "won" | "lost" => {
                    assert!(close <= now, "close after now");
                    assert!(close >= created - created.rem_euclid(DAY));
                    let stage = if row[2] == "won" {
                        "Closed Won"
                    } else {
                        "Closed Lost"
                    };
                    assert_eq!(row[6], stage);
                }
                other => panic!("status {other}"),
            }
            if row[10].is_empty() {
                assert!(row[11].is_empty());
                assert!(user_ids.contains(&row[5]), "direct without owner");
            } else {
                assert!(partner_ids.contains(&row[10]));
                assert!(row[11].is_empty() || rep_belongs(&row[11], &row[10]));
            }
            assert!(row[12].is_empty() || reg_ids.contains(&row[12]));
        }
        let statuses = [
            "submitted",
            "approved",
            "rejected",
            "expired",
            "cancelled",
            "won",
            "lost",
        ];
        for row in &regs.rows {
            assert!(partner_ids.contains(&row[1]));
            assert!(!row[2].is_empty());
            assert!(statuses.contains(&row[3].as_str()));
            let submitted = ts(&row[4]);
            assert!(submitted <= now && submitted >= now - 366 * DAY);
            assert!(
                row[5].is_empty() || rep_belongs(&row[5], &row[1]),
                "rep {}",
                row[5]
            );
            if !row[7].is_empty() {
                assert!(account_ids.contains(&row[7]));
                assert!(!own_accounts.contains(&row[7]));
            }
            if !row[8].is_empty() {
                assert!(opp_ids.contains(&row[8]));
                if !row[7].is_empty() {
                    assert_eq!(opp_account[row[8].as_str()], row[7]);
                }
            }
            let approved = (!row[9].is_empty()).then(|| ts(&row[9]));
            if let Some(a) = approved {
                assert!(a >= submitted && a <= now);
            }
            if ["approved", "won", "lost", "expired"].contains(&row[3].as_str()) {
                assert!(approved.is_some(), "{} without approved_at", row[3]);
            }
            if !row[10].is_empty() {
                assert!(ts(&row[10]) > approved.unwrap());
            }
            if !row[11].is_empty() {
                let a: f64 = row[11].parse().unwrap();
                assert!(a > 0.0);
            }
        }
        for row in &users.rows {
            assert!(!row[1].is_empty() && row[2].contains('@'));
        }
    }

    #[test]
    fn scaled_keeps_the_benchmark_proportions() {
        let p = SynthParams::scaled(1, 1_000_000, now());
        assert_eq!(
            (
                p.accounts,
                p.opportunities,
                p.registrations,
                p.reps,
                p.partners
            ),
            (200_000, 1_000_000, 100_000, 50_000, 2_000)
        );
        let p = SynthParams::scaled(1, 1_000, now());
        assert_eq!(
            (p.accounts, p.registrations, p.reps, p.partners),
            (200, 100, 50, 3)
        );
        let p = SynthParams::scaled(1, 0, now());
        assert_eq!(
            (
                p.accounts,
                p.opportunities,
                p.registrations,
                p.reps,
                p.partners
            ),
            (1, 0, 1, 1, 3)
        );
        assert_eq!((p.seed, p.now), (1, now()));
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, b, c) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("c"));
        let p = SynthParams::scaled(7, 5_000, now());
        let sa = write_program(&a.0, &p).unwrap();
        let sb = write_program(&b.0, &p).unwrap();
        assert_eq!(sa, sb);
        let sc = write_program(
            &c.0,
            &SynthParams {
                seed: 8,
                ..p.clone()
            },
        )
        .unwrap();
        assert_eq!(sc.opportunities, sa.opportunities);
        for f in FILES {
            let (x, y, z) = (
                fs::read(a.0.join(f)).unwrap(),
                fs::read(b.0.join(f)).unwrap(),
                fs::read(c.0.join(f)).unwrap(),
            );
            assert!(x == y, "{f} differs for the same seed");
            assert!(x != z, "{f} is the same for another seed");
        }
    }

    #[test]
    fn opportunities_do_not_depend_on_threads() {
        let d = TempDir::new("chunks");
        let p = SynthParams::scaled(5, 3 * OPP_CHUNK + 100, now());
        let m = build(&p).unwrap();
        let ids = Ids::new(&p, m.users);
        fs::create_dir_all(&d.0).unwrap();
        let on = |workers: usize| {
            let path = d.0.join(format!("opportunities-{workers}.csv"));
            write_opportunities_on(&path, &m, &p, &ids, None, workers).unwrap();
            fs::read(path).unwrap()
        };
        let one = on(1);
        assert_eq!(
            one.iter().filter(|b| **b == b'\n').count(),
            3 * OPP_CHUNK + 101,
            "a header and every row"
        );
        for workers in [2, 3, 8] {
            assert!(on(workers) == one, "{workers} threads wrote other bytes");
        }
    }

    #[test]
    fn files_are_valid_and_summary_counts_rows() {
        let d = TempDir::new("valid");
        let p = SynthParams::scaled(3, 20_000, now());
        let s = write_program(&d.0, &p).unwrap();
        validate(&d.0, &p, &s);
        // Linked opportunities are on the registration's account.
        let m = build(&p).unwrap();
        let opps = Table::read(&d.0, "opportunities.csv");
        for r in &m.regs {
            if let (Some(o), Customer::Account(a)) = (r.opp_link, r.customer) {
                assert_eq!(
                    opps.rows[o as usize][1],
                    format!("A-{:0w$}", a + 1, w = digits(p.accounts))
                );
            }
        }
        for (i, row) in opps.rows.iter().enumerate() {
            if let Some(r) = row[12].strip_prefix("R-") {
                let r = &m.regs[r.parse::<usize>().unwrap() - 1];
                let Customer::Account(a) = r.customer else {
                    panic!("O-{i} linked to a registration without account");
                };
                assert_eq!(row[1], format!("A-{:0w$}", a + 1, w = digits(p.accounts)));
            }
        }
    }

    #[test]
    fn the_default_profile_keeps_its_bytes() {
        // FNV-1a of each file as written before the skewed profile existed:
        // benchmarks on the default profile stay comparable across versions.
        let d = TempDir::new("pinned");
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        write_program(&d.0, &SynthParams::scaled(7, 5_000, now)).unwrap();
        for (f, want) in [
            ("accounts.csv", 0x636b_bfc8_b5d8_20cc_u64),
            ("opportunities.csv", 0xc404_2b9c_a7b3_fc9b),
            ("partner_reps.csv", 0xdfd3_11ca_1db6_1272),
            ("partners.csv", 0xc3c0_a15f_3d56_a16e),
            ("registrations.csv", 0x2aca_7def_b27f_c465),
            ("users.csv", 0x78a3_27b2_9185_a1d3),
        ] {
            assert_eq!(fnv(&fs::read(d.0.join(f)).unwrap()), want, "{f}");
        }
    }

    #[test]
    fn skewed_names_share_first_words_and_carry_branch_numbers() {
        let d = TempDir::new("skewed");
        let p = SynthParams {
            names: NameProfile::Skewed,
            ..SynthParams::scaled(5, 20_000, now())
        };
        let s = write_program(&d.0, &p).unwrap();
        validate(&d.0, &p, &s);
        let accounts = Table::read(&d.0, "accounts.csv");
        let norms: Vec<String> = accounts.rows.iter().map(|r| norm_name(&r[1])).collect();
        let n = norms.len();
        let mut firsts: HashMap<&str, usize> = HashMap::new();
        let (mut numbered, mut sized) = (0, 0);
        for norm in &norms {
            let words: Vec<&str> = norm.split(' ').collect();
            *firsts.entry(words[0]).or_default() += 1;
            numbered += usize::from(words.iter().any(|w| w.bytes().any(|b| b.is_ascii_digit())));
            sized += usize::from((2..=4).contains(&words.len()));
        }
        let top = firsts.values().copied().max().unwrap_or(0);
        assert!(top * 20 > n, "most common first word on {top} of {n}");
        assert!(numbered * 5 > n, "{numbered} of {n} numbered");
        assert!(sized * 100 > n * 95, "{sized} of {n} with 2-4 words");
        let keys: HashSet<String> = norms.iter().map(|x| x.replace(' ', "")).collect();
        assert!(keys.len() * 100 > n * 95, "{} distinct of {n}", keys.len());
    }

    #[test]
    fn real_names_are_made_of_real_words() {
        let d = TempDir::new("real");
        let p = SynthParams {
            names: NameProfile::Real,
            ..SynthParams::scaled(5, 20_000, now())
        };
        let s = write_program(&d.0, &p).unwrap();
        validate(&d.0, &p, &s);
        let real = RealWords::load();
        assert_eq!(real.sizes.len(), 1834);
        let lower = |w: &String| w.to_lowercase();
        let firsts: HashSet<String> = real.first.iter().map(lower).collect();
        let others: HashSet<String> = real.other.iter().map(lower).collect();
        assert!(firsts.contains("mitsubishi") && others.contains("holdings"));
        // The customers' accounts: not the partners' own.
        let partners = Table::read(&d.0, "partners.csv");
        let own = partners.col("crm_account_id");
        let own: HashSet<&str> = partners.rows.iter().map(|r| r[own].as_str()).collect();
        let accounts = Table::read(&d.0, "accounts.csv");
        let norms: Vec<String> = accounts
            .rows
            .iter()
            .filter(|r| !own.contains(r[0].as_str()))
            .map(|r| norm_name(&r[1]))
            .collect();
        let n = norms.len();
        let (mut numbered, mut one_word) = (0, 0);
        for norm in &norms {
            let words: Vec<&str> = norm.split(' ').collect();
            assert!(firsts.contains(words[0]), "{norm}");
            let number =
                words.len() > 1 && words[words.len() - 1].bytes().all(|b| b.is_ascii_digit());
            numbered += usize::from(number);
            one_word += usize::from(words.len() == 1);
            let rest = &words[1..words.len() - usize::from(number)];
            for w in rest.iter().filter(|w| **w != "branch") {
                assert!(others.contains(*w), "{w} in {norm}");
            }
        }
        assert!(
            numbered * 10 > n && numbered * 3 < n,
            "{numbered} of {n} numbered"
        );
        assert!(one_word * 20 > n, "{one_word} of {n} of one word");
        let keys: HashSet<String> = norms.iter().map(|x| x.replace(' ', "")).collect();
        assert!(keys.len() * 100 > n * 95, "{} distinct of {n}", keys.len());
    }

    #[test]
    fn tiny_and_odd_sizes_are_valid() {
        let mut cases: Vec<SynthParams> = [0, 1, 10, 99, 1000]
            .into_iter()
            .map(|n| SynthParams::scaled(9, n, now()))
            .collect();
        cases.push(SynthParams {
            seed: 1,
            accounts: 1,
            opportunities: 20,
            registrations: 5,
            reps: 0,
            partners: 1,
            now: now(),
            names: NameProfile::Default,
        });
        cases.push(SynthParams {
            seed: 2,
            accounts: 3,
            opportunities: 50,
            registrations: 40,
            reps: 2,
            partners: 5,
            now: now(),
            names: NameProfile::Default,
        });
        for p in cases {
            let d = TempDir::new("tiny");
            let s = write_program(&d.0, &p).unwrap();
            validate(&d.0, &p, &s);
        }
        let d = TempDir::new("bad");
        let p = SynthParams {
            accounts: 0,
            ..SynthParams::scaled(1, 10, now())
        };
        assert!(write_program(&d.0, &p).is_err());
    }

    fn jaro_winkler(a: &str, b: &str) -> f64 {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        if a.is_empty() && b.is_empty() {
            return 1.0;
        }
        let window = (a.len().max(b.len()) / 2).saturating_sub(1);
        let mut b_used = vec![false; b.len()];
        let mut a_matches = Vec::new();
        for (i, &c) in a.iter().enumerate() {
            let lo = i.saturating_sub(window);
            let hi = (i + window + 1).min(b.len());
            for j in lo..hi {
                if !b_used[j] && b[j] == c {
                    b_used[j] = true;
                    a_matches.push(c);
                    break;
                }
            }
        }
        let m = a_matches.len() as f64;
        if m == 0.0 {
            return 0.0;
        }
        let b_matches: Vec<char> = b
            .iter()
            .zip(&b_used)
            .filter(|(_, u)| **u)
            .map(|(c, _)| *c)
            .collect();
        let t = a_matches
            .iter()
            .zip(&b_matches)
            .filter(|(x, y)| x != y)
            .count() as f64
            / 2.0;
        let jaro = (m / a.len() as f64 + m / b.len() as f64 + (m - t) / m) / 3.0;
        let prefix = a.iter().zip(&b).take(4).take_while(|(x, y)| x == y).count() as f64;
        jaro + prefix * 0.1 * (1.0 - jaro)
    }

    #[test]
    fn every_name_variant_kind_appears() {
        let p = SynthParams::scaled(11, 10_000, now());
        let m = build(&p).unwrap();
        let mut counts: HashMap<Variant, usize> = HashMap::new();
        let (mut typos, mut close_typos) = (0, 0);
        for r in m.regs.iter().filter(|r| !r.anchor) {
            let Customer::Account(a) = r.customer else {
                continue;
            };
            let co = &m.accounts[a as usize].co;
            *counts.entry(r.variant).or_default() += 1;
            let (n, v) = (norm_name(&co.name), norm_name(&r.customer_name));
            match r.variant {
                Variant::Exact => assert_eq!(r.customer_name, co.name),
                Variant::Legal | Variant::Case | Variant::TheAnd => {
                    assert_eq!(v, n, "{:?}: {} vs {}", r.variant, r.customer_name, co.name);
                    assert_ne!(r.customer_name, co.name);
                }
                Variant::Typo if v == n => {} // no word long enough: a case change instead
                Variant::Typo => {
                    typos += 1;
                    let (nw, vw): (Vec<&str>, Vec<&str>) =
                        (n.split(' ').collect(), v.split(' ').collect());
                    assert_eq!(nw.len(), vw.len(), "{} vs {}", r.customer_name, co.name);
                    if nw.iter().zip(&vw).all(|(x, y)| jaro_winkler(x, y) >= 0.92) {
                        close_typos += 1;
                    }
                }
                Variant::Different => assert_ne!(v, n, "{}", r.customer_name),
            }
        }
        let total: usize = counts.values().sum();
        assert!(total > 800, "{total}");
        for (v, pct) in [
            (Variant::Exact, 40.0),
            (Variant::Legal, 25.0),
            (Variant::Case, 15.0),
            (Variant::Typo, 10.0),
            (Variant::TheAnd, 5.0),
            (Variant::Different, 5.0),
        ] {
            let got = counts.get(&v).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
            assert!((got - pct).abs() < pct / 3.0 + 1.0, "{v:?}: {got:.1}%");
        }
        assert!(
            typos * 10 >= counts[&Variant::Typo] * 7,
            "too few real typos"
        );
        assert!(close_typos * 100 >= typos * 95, "{close_typos} of {typos}");
    }

    /// The finding kinds the engine finds in a generated program, with
    /// their counts.
    fn finding_kinds(dir: &Path, now: DateTime<Utc>) -> HashMap<&'static str, usize> {
        // The bundled configuration: the exchange rates the generator's
        // currencies need.
        let config = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/channel-sync.toml"),
        )
        .unwrap();
        let settings = channel_sync::config::Settings::from_toml(&config).unwrap();
        let loaded = channel_sync::connectors::files::load(dir, &settings.scorecard).unwrap();
        assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected.first());
        let evaluation = channel_sync::engine::evaluate(&loaded.dataset, &settings, now);
        let mut kinds = HashMap::new();
        for f in &evaluation.findings {
            *kinds.entry(f.kind.as_str()).or_default() += 1;
        }
        kinds
    }

    #[test]
    fn review_inputs_keep_the_companies_and_reps_and_quieten_most_partners() {
        let plain = TempDir::new("plain");
        let with = TempDir::new("review");
        let p = SynthParams::scaled(5, 20_000, now());
        write_program(&plain.0, &p).unwrap();
        let s = write_program_with(&with.0, &p, true).unwrap();
        for f in [
            "accounts.csv",
            "partners.csv",
            "partner_reps.csv",
            "users.csv",
        ] {
            assert_eq!(
                fs::read(plain.0.join(f)).unwrap(),
                fs::read(with.0.join(f)).unwrap(),
                "{f}"
            );
        }
        // Registrations keep everything but who submitted them.
        let a = Table::read(&plain.0, "registrations.csv");
        let b = Table::read(&with.0, "registrations.csv");
        assert_eq!(a.rows.len(), b.rows.len());
        let reps = Table::read(&with.0, "partner_reps.csv");
        let rep_partner: HashMap<&str, &str> = reps
            .rows
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str()))
            .collect();
        let mut moved = 0;
        for (x, y) in a.rows.iter().zip(&b.rows) {
            for c in [0, 2, 3, 4, 6, 7, 8, 9, 10, 11] {
                assert_eq!(x[c], y[c], "column {c}");
            }
            moved += usize::from(x[1] != y[1]);
            // A moved registration's rep (when it has an id) is the new partner's.
            if let Some(p) = rep_partner.get(y[5].as_str()) {
                assert_eq!(*p, y[1]);
            }
        }
        assert!(moved > 0);
        let opps = Table::read(&with.0, "opportunities.csv");
        assert_eq!(opps.header.last().map(String::as_str), Some("campaign_id"));
        assert_eq!(opps.rows.len(), p.opportunities);
        for y in &opps.rows {
            // A campaign only on partner-sourced opportunities.
            assert!(y[13].is_empty() || !y[10].is_empty(), "{y:?}");
            if let Some(p) = rep_partner.get(y[11].as_str()) {
                assert_eq!(*p, y[10], "{y:?}");
            }
        }
        assert!(s.program_costs > 0 && s.mdf > 0);
        assert_eq!(Table::read(&with.0, "mdf.csv").rows.len(), s.mdf);
        assert_eq!(
            Table::read(&with.0, "program_costs.csv").rows.len(),
            s.program_costs
        );
        assert!(!plain.0.join("mdf.csv").exists());
    }

    #[test]
    fn review_inputs_give_a_review_with_cost_mdf_and_both_kinds_of_mdf() {
        let d = TempDir::new("reviewed");
        let p = SynthParams::scaled(11, 100_000, now());
        write_program_with(&d.0, &p, true).unwrap();
        let config = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/channel-sync.toml"),
        )
        .unwrap();
        let settings = channel_sync::config::Settings::from_toml(&config).unwrap();
        let files = channel_sync::connectors::files::load(&d.0, &settings.scorecard).unwrap();
        assert!(files.rejected.is_empty(), "{:?}", files.rejected.first());
        let (inputs, rejected) = channel_sync::connectors::files::load_review_inputs(
            &d.0,
            &d.0,
            &files.dataset.partners,
            &settings.scorecard,
        )
        .unwrap();
        assert!(rejected.is_empty(), "{:?}", rejected.first());
        let review =
            channel_sync::engine::review::review(&files.dataset, &inputs, &settings, p.now, 4);
        assert!(review.inputs.program_costs && review.inputs.mdf && review.inputs.campaign_ids);
        let last_full = &review.quarters[review.quarters.len() - 2].label;
        let program = &review.program[last_full];
        assert!(program.cost.is_some_and(|c| c > 0.0), "{program:?}");
        assert!(program.roi.is_some());
        // Some MDF produced pipeline, some did not.
        let eff = program.mdf_effectiveness.unwrap();
        assert!(eff > 0.0 && eff < 1.0, "mdf effectiveness {eff}");
        assert!(program.mdf_pipeline.is_some_and(|x| x > 0.0));
        // Most partners dormant, about one in ten producing.
        let n = review.partners.len();
        let dormant = review.dormant.len();
        assert!(dormant * 10 >= n * 7, "{dormant} of {n} dormant");
        let producing = review
            .partners
            .iter()
            .filter(|p| p.quarters[last_full].sourced_pipeline_created > 0.0)
            .count();
        assert!(
            producing > 0 && producing * 5 <= n,
            "{producing} of {n} producing"
        );
        eprintln!("{dormant} of {n} dormant, {producing} producing");
    }

    #[test]
    fn every_finding_kind_appears_from_1000_opportunities() {
        for seed in 1..=4 {
            let d = TempDir::new("findings");
            let p = SynthParams::scaled(seed, 1_000, now());
            write_program(&d.0, &p).unwrap();
            let kinds = finding_kinds(&d.0, p.now);
            for kind in channel_sync::engine::FindingKind::ALL {
                assert!(
                    kinds.get(kind.as_str()).is_some_and(|n| *n >= 1),
                    "seed {seed}: no {} in {kinds:?}",
                    kind.as_str()
                );
            }
        }
    }

    #[test]
    fn timestamps_match_chrono() {
        let mut rng = stream(1, 99);
        for _ in 0..2_000 {
            let t = rng.random_range(-2_000_000_000i64..8_000_000_000);
            let expected = DateTime::from_timestamp(t, 0)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Secs, true);
            let mut buf = Vec::new();
            push_ts(&mut buf, t);
            assert_eq!(String::from_utf8(buf).unwrap(), expected);
        }
        let mut buf = Vec::new();
        push_amount(&mut buf, 100_005);
        assert_eq!(buf, b"1000.05");
    }
}
