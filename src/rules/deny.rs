//! Deny lists: files of addresses that must never be paid (the public sanctioned-address lists,
//! or the operator's own), and the one rule for comparing an address with them.
//!
//! The format is the one the public lists use: one address per line, `#` starts a comment (a
//! whole line or the rest of one), blank lines are ignored. A line is its first
//! whitespace-separated word, so a list that adds a label after the address still reads.
//!
//! How two addresses compare ([`match_key`]) follows the chains' own case rules: EVM addresses
//! (`0x` and 40 hex digits, checksummed or not) and bech32 addresses (`bc1…`, `ltc1…`, …) are
//! case-insensitive, so they compare in lower case; base58 addresses (TRON, Bitcoin legacy,
//! Solana, XRP) and everything else are case-sensitive, so they compare exactly. A list does not
//! say which chain an address is on, and need not: the form of an address says which rule holds.
//!
//! Pure: the files are read by the caller (`crate::app::controls`), which names them.

use std::borrow::Cow;
use std::collections::HashMap;

/// The form of `address` that deny lists and the recipient registry compare: lower case for
/// case-insensitive forms (EVM hex, bech32), the address itself otherwise.
pub fn match_key(address: &str) -> Cow<'_, str> {
    let a = address.trim();
    if is_evm_hex(a) || is_bech32_like(a) {
        Cow::Owned(a.to_ascii_lowercase())
    } else {
        Cow::Borrowed(a)
    }
}

fn is_evm_hex(a: &str) -> bool {
    let Some(hex) = a.strip_prefix("0x").or_else(|| a.strip_prefix("0X")) else {
        return false;
    };
    hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A bech32 (or bech32m) address of the Bitcoin family: a known human-readable part, `1`, then
/// the data part in bech32's alphabet, written all in one case.
fn is_bech32_like(a: &str) -> bool {
    const HRPS: [&str; 6] = ["bc", "tb", "bcrt", "ltc", "tltc", "rltc"];
    let Some((hrp, data)) = a.rsplit_once('1') else {
        return false;
    };
    let all_lower = a.bytes().all(|b| !b.is_ascii_uppercase());
    let all_upper = a.bytes().all(|b| !b.is_ascii_lowercase());
    HRPS.iter().any(|h| h.eq_ignore_ascii_case(hrp))
        && data.len() >= 6
        && (all_lower || all_upper)
        && data
            .bytes()
            .all(|b| b"qpzry9x8gf2tvdw0s3jn54khce6mua7l".contains(&b.to_ascii_lowercase()))
}

/// One deny list: its name (the file, as the configuration gives it) and its addresses, each
/// with the line it is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList {
    name: String,
    /// Match key → first line it is on.
    entries: HashMap<String, u32>,
}

impl DenyList {
    /// Reads a list's text. Nothing in it is an error: a line is an address or a comment.
    pub fn parse(name: &str, text: &str) -> DenyList {
        let mut entries = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            let Some(address) = line.split_whitespace().next() else {
                continue;
            };
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            entries.entry(match_key(address).into_owned()).or_insert(number);
        }
        DenyList {
            name: name.to_owned(),
            entries,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Addresses in the list.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A recipient found on a deny list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DenyHit {
    /// The list, as the configuration names it.
    pub list: String,
    /// The line of the list the address is on.
    pub line: u32,
}

impl DenyHit {
    /// The refusal of a row, naming the list and line.
    pub fn reason(&self) -> String {
        format!(
            "the recipient is on the deny list {} (line {}); it is never paid",
            self.list, self.line
        )
    }
}

/// Every configured deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyLists {
    lists: Vec<DenyList>,
}

impl DenyLists {
    pub fn new(lists: Vec<DenyList>) -> DenyLists {
        DenyLists { lists }
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    pub fn lists(&self) -> &[DenyList] {
        &self.lists
    }

    /// The first list (in configuration order) that holds `address`.
    pub fn check(&self, address: &str) -> Option<DenyHit> {
        let key = match_key(address);
        self.lists.iter().find_map(|list| {
            list.entries.get(key.as_ref()).map(|&line| DenyHit {
                list: list.name.clone(),
                line,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVM: &str = "0x8589427373D6D84E98730D7795D8f6f8731FDA16";
    const TRON: &str = "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf";
    const BECH32: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";

    fn lists() -> DenyLists {
        DenyLists::new(vec![
            DenyList::parse(
                "ofac.txt",
                &format!(
                    "# sanctioned\n\n{EVM}\n  {TRON}  # a label\n{}\n",
                    BECH32.to_uppercase()
                ),
            ),
            DenyList::parse("own.txt", &format!("{TRON}\nsomeone@example.com\n")),
        ])
    }

    #[test]
    fn a_listed_address_is_found_with_its_list_and_line() {
        let l = lists();
        assert_eq!(
            l.check(TRON),
            Some(DenyHit {
                list: "ofac.txt".into(),
                line: 4
            })
        );
        assert_eq!(l.check(EVM).unwrap().line, 3);
        assert_eq!(l.check("someone@example.com").unwrap().list, "own.txt");
        assert!(l.check(TRON).unwrap().reason().contains("ofac.txt (line 4)"));
        assert_eq!(l.lists()[0].len(), 3);
    }

    #[test]
    fn case_follows_each_chain_s_rule() {
        let l = lists();
        // EVM and bech32 are case-insensitive.
        assert!(l.check(&EVM.to_lowercase()).is_some());
        assert!(l.check(&EVM.to_uppercase().replace("0X", "0x")).is_some());
        assert!(
            l.check(BECH32).is_some(),
            "an upper-case bech32 entry matches lower case"
        );
        // Base58 is not: changing the case is another address.
        assert!(l.check(&TRON.to_lowercase()).is_none());
        assert!(l.check("TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBF").is_none());
        assert!(l.check("0x0000000000000000000000000000000000000001").is_none());
    }

    #[test]
    fn comments_and_blank_lines_are_not_addresses() {
        let list = DenyList::parse("x", "# only a comment\n\n   \n#0xabc\n");
        assert!(list.is_empty());
    }
}
