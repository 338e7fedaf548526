//! China's administrative division codes and the registry of real codes.
//!
//! A [`DivisionCode`] is 2 (province), 4 (prefecture/city), 6 (county or
//! district), 9 (township or street) or 12 (village or community) digits; the
//! parent of a code is its prefix one level up. [`Divisions`] holds the real
//! reference data (National Bureau of Statistics, cut-off 2023-06-30), each
//! level checked against its own file, in sorted `u64` vectors with one string
//! arena per level for the names, so 620k communities load in well under a
//! second and take a few tens of megabytes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::DivisionError;

/// The five levels of the division hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivisionLevel {
    /// 省级, 2 digits.
    Province,
    /// 地级, 4 digits.
    City,
    /// 县级 (qu/xian), 6 digits.
    County,
    /// 乡级 (township/street), 9 digits.
    Street,
    /// 村级 (village/community, shequ), 12 digits.
    Community,
}

impl DivisionLevel {
    /// All levels, from the top down.
    pub const ALL: [DivisionLevel; 5] = [
        DivisionLevel::Province,
        DivisionLevel::City,
        DivisionLevel::County,
        DivisionLevel::Street,
        DivisionLevel::Community,
    ];

    /// Number of digits of a code of this level.
    pub const fn digits(self) -> u32 {
        match self {
            DivisionLevel::Province => 2,
            DivisionLevel::City => 4,
            DivisionLevel::County => 6,
            DivisionLevel::Street => 9,
            DivisionLevel::Community => 12,
        }
    }

    /// The level for a number of digits.
    pub const fn from_digits(digits: usize) -> Option<Self> {
        match digits {
            2 => Some(DivisionLevel::Province),
            4 => Some(DivisionLevel::City),
            6 => Some(DivisionLevel::County),
            9 => Some(DivisionLevel::Street),
            12 => Some(DivisionLevel::Community),
            _ => None,
        }
    }

    /// The level above, if any.
    pub const fn parent(self) -> Option<Self> {
        match self {
            DivisionLevel::Province => None,
            DivisionLevel::City => Some(DivisionLevel::Province),
            DivisionLevel::County => Some(DivisionLevel::City),
            DivisionLevel::Street => Some(DivisionLevel::County),
            DivisionLevel::Community => Some(DivisionLevel::Street),
        }
    }

    /// The English name of the level.
    pub const fn name(self) -> &'static str {
        match self {
            DivisionLevel::Province => "province",
            DivisionLevel::City => "city",
            DivisionLevel::County => "county",
            DivisionLevel::Street => "street",
            DivisionLevel::Community => "community",
        }
    }

    const fn index(self) -> usize {
        match self {
            DivisionLevel::Province => 0,
            DivisionLevel::City => 1,
            DivisionLevel::County => 2,
            DivisionLevel::Street => 3,
            DivisionLevel::Community => 4,
        }
    }
}

/// A well-formed division code (its existence is checked by [`Divisions`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DivisionCode {
    level: DivisionLevel,
    value: u64,
}

impl DivisionCode {
    /// Parses 2, 4, 6, 9 or 12 ASCII digits.
    pub fn parse(text: &str) -> Result<Self, DivisionError> {
        let trimmed = text.trim();
        let level = DivisionLevel::from_digits(trimmed.len())
            .filter(|_| trimmed.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| DivisionError::Malformed(text.to_owned()))?;
        let value = trimmed
            .parse::<u64>()
            .map_err(|_| DivisionError::Malformed(text.to_owned()))?;
        Ok(Self { level, value })
    }

    /// The level of the code.
    pub const fn level(&self) -> DivisionLevel {
        self.level
    }

    /// The code as a number (without its level).
    pub const fn value(&self) -> u64 {
        self.value
    }

    /// The code of the containing division one level up.
    pub fn parent(&self) -> Option<DivisionCode> {
        self.level.parent().map(|p| self.truncate(p))
    }

    /// The code of the containing division at `level`, if `level` is this
    /// code's level or above it.
    pub fn ancestor_at(&self, level: DivisionLevel) -> Option<DivisionCode> {
        (level <= self.level).then(|| self.truncate(level))
    }

    /// The province this code is in.
    pub fn province(&self) -> DivisionCode {
        self.truncate(DivisionLevel::Province)
    }

    /// The county this code is in, if it is a county or below.
    pub fn county(&self) -> Option<DivisionCode> {
        self.ancestor_at(DivisionLevel::County)
    }

    /// Whether `other` is this division or lies inside it (by code prefix).
    pub fn contains(&self, other: &DivisionCode) -> bool {
        other.level >= self.level && other.truncate(self.level) == *self
    }

    fn truncate(&self, level: DivisionLevel) -> DivisionCode {
        let drop = self.level.digits() - level.digits();
        DivisionCode {
            level,
            value: self.value / 10u64.pow(drop),
        }
    }
}

impl fmt::Display for DivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:0width$}",
            self.value,
            width = self.level.digits() as usize
        )
    }
}

impl fmt::Debug for DivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DivisionCode({self})")
    }
}

impl FromStr for DivisionCode {
    type Err = DivisionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for DivisionCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DivisionCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DivisionCode::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The codes and names of one level, sorted by code.
#[derive(Debug, Default)]
struct LevelTable {
    codes: Vec<u64>,
    /// `name_ends[i]` is the end of name `i` in `names`.
    name_ends: Vec<u32>,
    names: String,
}

impl LevelTable {
    fn position(&self, value: u64) -> Option<usize> {
        self.codes.binary_search(&value).ok()
    }

    fn name(&self, index: usize) -> &str {
        let end = self.name_ends[index] as usize;
        let start = if index == 0 {
            0
        } else {
            self.name_ends[index - 1] as usize
        };
        &self.names[start..end]
    }

    fn heap_bytes(&self) -> usize {
        self.codes.capacity() * 8 + self.name_ends.capacity() * 4 + self.names.capacity()
    }
}

/// The registry of real division codes, one table per level.
#[derive(Debug)]
pub struct Divisions {
    levels: [LevelTable; 5],
}

/// File names of the levels, top down.
const FILES: [&str; 5] = [
    "provinces.csv",
    "cities.csv",
    "counties.csv",
    "streets.csv",
    "communities.csv.gz",
];

impl Divisions {
    /// The repository's copy of the data: `shared/divisions/` beside the kernel crate.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("divisions")
    }

    /// Loads the repository's copy (see [`Divisions::default_dir`]).
    pub fn load_default() -> Result<Self, DivisionError> {
        Self::load_from(Self::default_dir())
    }

    /// Loads all five levels from `dir`, checking every row: the code has the
    /// level's number of digits, its parent column equals its prefix and the
    /// parent exists one level up.
    pub fn load_from(dir: impl AsRef<Path>) -> Result<Self, DivisionError> {
        let dir = dir.as_ref();
        let mut levels: [LevelTable; 5] = Default::default();
        for level in DivisionLevel::ALL {
            let path = dir.join(FILES[level.index()]);
            let table = {
                let parent = level.parent().map(|p| &levels[p.index()]);
                load_level(&path, level, parent)?
            };
            levels[level.index()] = table;
        }
        Ok(Self { levels })
    }

    /// Builds a registry from explicit rows (tests and small fixtures). Rows
    /// may come in any order; parents must be present.
    pub fn from_codes<'a>(
        rows: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DivisionError> {
        let mut per_level: [Vec<(u64, &str)>; 5] = Default::default();
        for (code, name) in rows {
            let parsed = DivisionCode::parse(code)?;
            per_level[parsed.level.index()].push((parsed.value, name));
        }
        let mut levels: [LevelTable; 5] = Default::default();
        for level in DivisionLevel::ALL {
            let mut rows = std::mem::take(&mut per_level[level.index()]);
            rows.sort_unstable_by_key(|r| r.0);
            let mut table = LevelTable::default();
            for (value, name) in rows {
                let code = DivisionCode { level, value };
                if let Some(parent) = code.parent() {
                    if levels[parent.level.index()]
                        .position(parent.value)
                        .is_none()
                    {
                        return Err(DivisionError::Unknown {
                            code: parent.to_string(),
                            level: parent.level.name(),
                        });
                    }
                }
                push_row(&mut table, value, name);
            }
            levels[level.index()] = table;
        }
        Ok(Self { levels })
    }

    /// Whether the code exists at its own level.
    pub fn exists(&self, code: &DivisionCode) -> bool {
        self.levels[code.level.index()]
            .position(code.value)
            .is_some()
    }

    /// Checks that the code exists at its own level.
    pub fn check(&self, code: &DivisionCode) -> Result<(), DivisionError> {
        if self.exists(code) {
            Ok(())
        } else {
            Err(DivisionError::Unknown {
                code: code.to_string(),
                level: code.level.name(),
            })
        }
    }

    /// Parses a code and checks that it exists.
    pub fn parse_known(&self, text: &str) -> Result<DivisionCode, DivisionError> {
        let code = DivisionCode::parse(text)?;
        self.check(&code)?;
        Ok(code)
    }

    /// Parses a code, checks that it exists and that it is at `level`.
    pub fn parse_at(
        &self,
        text: &str,
        level: DivisionLevel,
    ) -> Result<DivisionCode, DivisionError> {
        let code = self.parse_known(text)?;
        if code.level != level {
            return Err(DivisionError::WrongLevel {
                code: code.to_string(),
                expected: level.name(),
                actual: code.level.name(),
            });
        }
        Ok(code)
    }

    /// The official name of a code, if it exists.
    pub fn name(&self, code: &DivisionCode) -> Option<&str> {
        let table = &self.levels[code.level.index()];
        table.position(code.value).map(|i| table.name(i))
    }

    /// The chain of existing ancestors, from the code itself up to its province.
    pub fn lineage(&self, code: &DivisionCode) -> Vec<DivisionCode> {
        let mut out = Vec::new();
        let mut current = Some(*code);
        while let Some(c) = current {
            if self.exists(&c) {
                out.push(c);
            }
            current = c.parent();
        }
        out
    }

    /// Whether region `a` contains area `b`: both exist and `b` lies inside `a`.
    pub fn contains(&self, a: &DivisionCode, b: &DivisionCode) -> bool {
        self.exists(a) && self.exists(b) && a.contains(b)
    }

    /// Number of codes at a level.
    pub fn count(&self, level: DivisionLevel) -> usize {
        self.levels[level.index()].codes.len()
    }

    /// The direct children of a code (e.g. the streets of a county).
    pub fn children(&self, code: &DivisionCode) -> Vec<DivisionCode> {
        let Some(level) = DivisionLevel::ALL.get(code.level.index() + 1).copied() else {
            return Vec::new();
        };
        let shift = 10u64.pow(level.digits() - code.level.digits());
        let (lo, hi) = (code.value * shift, (code.value + 1) * shift);
        let table = &self.levels[level.index()];
        let start = table.codes.partition_point(|c| *c < lo);
        let end = table.codes.partition_point(|c| *c < hi);
        table.codes[start..end]
            .iter()
            .map(|value| DivisionCode {
                level,
                value: *value,
            })
            .collect()
    }

    /// Approximate heap memory held by the registry, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.levels.iter().map(LevelTable::heap_bytes).sum()
    }
}

fn push_row(table: &mut LevelTable, value: u64, name: &str) {
    table.codes.push(value);
    table.names.push_str(name);
    // Names total a few tens of megabytes, far below u32::MAX.
    table
        .name_ends
        .push(u32::try_from(table.names.len()).unwrap_or(u32::MAX));
}

fn load_level(
    path: &Path,
    level: DivisionLevel,
    parent: Option<&LevelTable>,
) -> Result<LevelTable, DivisionError> {
    let shown = path.display().to_string();
    let io_err = |e: std::io::Error| DivisionError::Io {
        path: shown.clone(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(io_err)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(BufReader::with_capacity(
            1 << 16,
            file,
        )))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut table = LevelTable::default();
    let mut line = String::new();
    let mut line_no = 0usize;
    let mut sorted = true;
    let mut rows: Vec<(u64, u32, u32)> = Vec::new();
    let bad = |line: usize, message: String| DivisionError::BadData {
        path: shown.clone(),
        line,
        message,
    };
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_err)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let row = line.trim_end_matches(['\r', '\n']);
        if line_no == 1 || row.is_empty() {
            continue; // header
        }
        let fields = split_csv(row).map_err(|m| bad(line_no, m))?;
        if fields.len() < 2 {
            return Err(bad(line_no, "expected at least code and name".into()));
        }
        let code = DivisionCode::parse(fields[0])
            .map_err(|_| bad(line_no, format!("`{}` is not a division code", fields[0])))?;
        if code.level != level {
            return Err(bad(
                line_no,
                format!(
                    "`{}` has {} digits, {} codes have {}",
                    fields[0],
                    fields[0].len(),
                    level.name(),
                    level.digits()
                ),
            ));
        }
        if let (Some(parent_table), Some(parent_code)) = (parent, code.parent()) {
            let column = fields.get(2).copied().unwrap_or_default();
            if column != parent_code.to_string() {
                return Err(bad(
                    line_no,
                    format!("parent column `{column}` is not the prefix {parent_code}"),
                ));
            }
            if parent_table.position(parent_code.value).is_none() {
                return Err(bad(line_no, format!("parent {parent_code} does not exist")));
            }
        }
        if table.codes.last().is_some_and(|last| *last >= code.value) {
            sorted = false;
        }
        if sorted {
            push_row(&mut table, code.value, fields[1]);
        } else {
            if rows.is_empty() {
                // Move what was loaded so far into the row list, then sort at the end.
                for i in 0..table.codes.len() {
                    let start = if i == 0 { 0 } else { table.name_ends[i - 1] };
                    rows.push((table.codes[i], start, table.name_ends[i]));
                }
                table.codes.clear();
                table.name_ends.clear();
            }
            let start = u32::try_from(table.names.len()).unwrap_or(u32::MAX);
            table.names.push_str(fields[1]);
            let end = u32::try_from(table.names.len()).unwrap_or(u32::MAX);
            rows.push((code.value, start, end));
        }
    }
    if !sorted {
        rows.sort_unstable_by_key(|r| r.0);
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(bad(0, format!("duplicate code {}", w[0].0)));
        }
        let names = std::mem::take(&mut table.names);
        for (value, start, end) in rows {
            push_row(&mut table, value, &names[start as usize..end as usize]);
        }
    }
    table.codes.shrink_to_fit();
    table.name_ends.shrink_to_fit();
    table.names.shrink_to_fit();
    Ok(table)
}

/// Splits one CSV row with optional double-quoted fields (no embedded newlines).
fn split_csv(row: &str) -> Result<Vec<&str>, String> {
    let mut fields = Vec::with_capacity(4);
    let mut rest = row;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| "unterminated quoted field".to_string())?;
            fields.push(&quoted[..end]);
            rest = &quoted[end + 1..];
            match rest.strip_prefix(',') {
                Some(next) => rest = next,
                None if rest.is_empty() => return Ok(fields),
                None => return Err("text after a closing quote".into()),
            }
        } else {
            match rest.find(',') {
                Some(i) => {
                    fields.push(&rest[..i]);
                    rest = &rest[i + 1..];
                }
                None => {
                    fields.push(rest);
                    return Ok(fields);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn real() -> &'static Divisions {
        static REAL: OnceLock<Divisions> = OnceLock::new();
        REAL.get_or_init(|| match Divisions::load_default() {
            Ok(d) => d,
            Err(e) => panic!("the repository's division data must load: {e}"),
        })
    }

    fn code(s: &str) -> DivisionCode {
        DivisionCode::parse(s).unwrap()
    }

    #[test]
    fn parse_accepts_each_level_and_rejects_other_shapes() {
        for (text, level) in [
            ("11", DivisionLevel::Province),
            ("1101", DivisionLevel::City),
            ("110106", DivisionLevel::County),
            ("110106018", DivisionLevel::Street),
            ("110101001001", DivisionLevel::Community),
        ] {
            assert_eq!(code(text).level(), level);
            assert_eq!(code(text).to_string(), text);
        }
        for bad in ["", "1", "110", "11010A", "1101060180", "-11", "１１"] {
            assert_eq!(
                DivisionCode::parse(bad),
                Err(DivisionError::Malformed(bad.to_owned()))
            );
        }
    }

    #[test]
    fn parents_and_containment_follow_the_code_prefix() {
        let community = code("110101001001");
        assert_eq!(community.parent(), Some(code("110101001")));
        assert_eq!(code("110106018").parent(), Some(code("110106")));
        assert_eq!(code("110106").parent(), Some(code("1101")));
        assert_eq!(code("1101").parent(), Some(code("11")));
        assert_eq!(code("11").parent(), None);
        assert!(code("110106").contains(&code("110106018")));
        assert!(code("11").contains(&code("110101001001")));
        assert!(!code("110106018").contains(&code("110106")));
        assert!(!code("110106").contains(&code("110101001")));
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let json = serde_json::to_string(&code("110106018")).unwrap();
        assert_eq!(json, "\"110106018\"");
        let back: DivisionCode = serde_json::from_str(&json).unwrap();
        assert_eq!(back, code("110106018"));
        assert!(serde_json::from_str::<DivisionCode>("\"1101060\"").is_err());
    }

    #[test]
    fn real_data_knows_fengtai_and_huaxiang_and_their_names() {
        let d = real();
        assert_eq!(d.count(DivisionLevel::Province), 31);
        assert_eq!(d.count(DivisionLevel::City), 342);
        assert_eq!(d.count(DivisionLevel::County), 2978);
        assert_eq!(d.count(DivisionLevel::Street), 41352);
        assert_eq!(d.count(DivisionLevel::Community), 620573);
        assert_eq!(d.name(&code("110106")), Some("丰台区"));
        assert_eq!(d.name(&code("110106018")), Some("花乡街道"));
        assert_eq!(d.name(&code("110101001001")), Some("多福巷社区居委会"));
        assert!(d.contains(&code("110106"), &code("110106018")));
        assert!(!d.contains(&code("110101"), &code("110106018")));
    }

    #[test]
    fn each_level_is_checked_against_its_own_file() {
        let d = real();
        // A county padded with zeros is not a community.
        assert!(d.parse_known("110106000000").is_err());
        assert!(d.parse_known("110106018").is_ok());
        assert_eq!(
            d.parse_at("110106018", DivisionLevel::Community),
            Err(DivisionError::WrongLevel {
                code: "110106018".into(),
                expected: "community",
                actual: "street"
            })
        );
        assert_eq!(
            d.parse_known("119999"),
            Err(DivisionError::Unknown {
                code: "119999".into(),
                level: "county"
            })
        );
    }

    #[test]
    fn lineage_walks_community_to_province() {
        let d = real();
        let lineage = d.lineage(&code("110101001001"));
        let texts: Vec<String> = lineage.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["110101001001", "110101001", "110101", "1101", "11"]);
        assert!(d.children(&code("110106")).contains(&code("110106018")));
    }

    #[test]
    fn missing_directory_is_a_clear_io_error() {
        let err = Divisions::load_from("/nonexistent/divisions").unwrap_err();
        assert!(matches!(err, DivisionError::Io { .. }), "{err}");
    }

    #[test]
    fn small_fixture_registry_checks_parents() {
        let d = Divisions::from_codes([("11", "北京市"), ("1101", "市辖区"), ("110106", "丰台区")])
            .unwrap();
        assert!(d.exists(&code("110106")));
        assert!(Divisions::from_codes([("110106", "丰台区")]).is_err());
    }

    #[test]
    fn csv_splitter_handles_quotes() {
        assert_eq!(
            split_csv(r#"110101,"东城区",1101,11"#).unwrap(),
            ["110101", "东城区", "1101", "11"]
        );
        assert_eq!(split_csv("11,x").unwrap(), ["11", "x"]);
        assert!(split_csv(r#"11,"x"#).is_err());
    }
}
