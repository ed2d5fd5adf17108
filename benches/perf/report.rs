//! Figures, the bars they are held to, the lines printed as they come, and the summary (a table
//! on stdout and `target/perf/summary.json`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// A quality bar from the product brief.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "limit", rename_all = "snake_case")]
pub enum Bar {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
}

impl Bar {
    fn met(self, value: f64) -> bool {
        match self {
            Bar::AtLeast(limit) => value >= limit,
            Bar::AtMost(limit) => value <= limit,
            Bar::Below(limit) => value < limit,
        }
    }

    fn text(self, unit: &str) -> String {
        let (sign, limit) = match self {
            Bar::AtLeast(limit) => ("≥", limit),
            Bar::AtMost(limit) => ("≤", limit),
            Bar::Below(limit) => ("<", limit),
        };
        format!("{sign} {} {unit}", number(limit)).trim_end().to_owned()
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    /// `NaN` when it could not be measured (`null` in the JSON); a bar then counts as missed.
    pub value: f64,
    pub unit: String,
    pub bar: Option<Bar>,
    pub note: String,
}

impl Figure {
    /// A figure without a bar (set `scenario` later: [`Report::add`] does).
    pub fn new(name: impl Into<String>, value: f64, unit: &str) -> Figure {
        Figure {
            scenario: "",
            name: name.into(),
            value,
            unit: unit.to_owned(),
            bar: None,
            note: String::new(),
        }
    }

    pub fn at_least(self, limit: f64) -> Figure {
        self.with_bar(Bar::AtLeast(limit))
    }

    pub fn at_most(self, limit: f64) -> Figure {
        self.with_bar(Bar::AtMost(limit))
    }

    pub fn below(self, limit: f64) -> Figure {
        self.with_bar(Bar::Below(limit))
    }

    fn with_bar(mut self, bar: Bar) -> Figure {
        self.bar = Some(bar);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    /// `PASS`, `MISS`, or empty for a figure without a bar.
    pub fn verdict(&self) -> &'static str {
        match self.bar {
            None => "",
            Some(bar) if bar.met(self.value) => "PASS",
            Some(_) => "MISS",
        }
    }

    fn value_text(&self) -> String {
        format!("{} {}", number(self.value), self.unit).trim_end().to_owned()
    }

    fn bar_text(&self) -> String {
        self.bar.map_or_else(|| "-".to_owned(), |b| b.text(&self.unit))
    }
}

/// A number with as many decimals as its size deserves.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let digits = match v.abs() {
        a if a >= 100.0 || a == a.trunc() => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{v:.digits$}")
}

/// How a scenario ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub seconds: f64,
    /// `None`: it ran to the end; `Some`: a correctness check failed or a child crashed.
    pub error: Option<String>,
}

/// Everything measured so far.
#[derive(Debug, Default)]
pub struct Report {
    current: &'static str,
    figures: Vec<Figure>,
    outcomes: Vec<Outcome>,
}

impl Report {
    pub fn begin(&mut self, scenario: &'static str) {
        self.current = scenario;
        println!("\n== {scenario} ==");
    }

    /// Records a figure of the current scenario and prints it at once.
    pub fn add(&mut self, mut figure: Figure) {
        figure.scenario = self.current;
        let verdict = match figure.verdict() {
            "" => String::new(),
            v => format!("  [bar {}: {v}]", figure.bar_text()),
        };
        let note = if figure.note.is_empty() {
            String::new()
        } else {
            format!("  ({})", figure.note)
        };
        println!("  {:<42} {:>18}{verdict}{note}", figure.name, figure.value_text());
        self.figures.push(figure);
    }

    /// Closes the current scenario.
    pub fn end(&mut self, took: Duration, result: anyhow::Result<()>) {
        let error = result.err().map(|e| format!("{e:#}"));
        if let Some(e) = &error {
            println!("  FAILED: {e}");
        }
        println!("  ({:.1} s)", took.as_secs_f64());
        self.outcomes.push(Outcome {
            scenario: self.current,
            seconds: took.as_secs_f64(),
            error,
        });
    }

    /// Whether any scenario failed a correctness check.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.error.is_some())
    }

    /// The summary table, with the machine and the run.
    pub fn summary(&self, about: &About) -> String {
        let mut rows: Vec<[String; 5]> = vec![[
            "scenario".into(),
            "figure".into(),
            "value".into(),
            "bar".into(),
            "result".into(),
        ]];
        for f in &self.figures {
            rows.push([
                f.scenario.into(),
                f.name.clone(),
                f.value_text(),
                f.bar_text(),
                f.verdict().into(),
            ]);
        }
        for o in self.outcomes.iter().filter(|o| o.error.is_some()) {
            rows.push([
                o.scenario.into(),
                "correctness".into(),
                "-".into(),
                "-".into(),
                "FAILED".into(),
            ]);
        }
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}", w = *w))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            if i == 0 {
                let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 8));
            }
        }
        let (passed, missed) = self.figures.iter().fold((0, 0), |(p, m), f| match f.verdict() {
            "PASS" => (p + 1, m),
            "MISS" => (p, m + 1),
            _ => (p, m),
        });
        let failed: Vec<&str> = self
            .outcomes
            .iter()
            .filter(|o| o.error.is_some())
            .map(|o| o.scenario)
            .collect();
        let _ = writeln!(
            out,
            "\nbars: {passed} PASS, {missed} MISS; correctness: {}",
            if failed.is_empty() {
                "every check held".to_owned()
            } else {
                format!("FAILED in {}", failed.join(", "))
            }
        );
        let _ = writeln!(
            out,
            "mode: {}; cores: {}; date: {}; commit: {}; wall time: {:.1} s",
            about.mode, about.cores, about.date_utc, about.commit, about.wall_seconds
        );
        let _ = writeln!(
            out,
            "load average (1 min) at start {}, at end {} (other work on the machine skews the figures)",
            about.load_at_start, about.load_at_end
        );
        out
    }

    /// Writes the summary as JSON to `path`.
    pub fn write_json(&self, about: &About, path: &Path) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct Summary<'a> {
            about: &'a About,
            figures: Vec<JsonFigure<'a>>,
            scenarios: &'a [Outcome],
            correctness_failed: bool,
        }
        #[derive(Serialize)]
        struct JsonFigure<'a> {
            #[serde(flatten)]
            figure: &'a Figure,
            result: &'static str,
        }
        let summary = Summary {
            about,
            figures: self
                .figures
                .iter()
                .map(|figure| JsonFigure {
                    figure,
                    result: figure.verdict(),
                })
                .collect(),
            scenarios: &self.outcomes,
            correctness_failed: self.failed(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)?;
        Ok(())
    }
}

/// The machine and the run, printed under the table and written into the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct About {
    pub mode: &'static str,
    pub cores: usize,
    pub date_utc: String,
    pub commit: String,
    pub wall_seconds: f64,
    /// The 1-minute load average from /proc/loadavg.
    pub load_at_start: String,
    pub load_at_end: String,
}

/// The 1-minute load average, or `?`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
