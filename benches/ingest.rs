//! Ingest benchmark: parse and locally validate a generated 1,000,000-row CSV.
//!
//! Run with `cargo bench --bench ingest` (add `-- --rows N` for another size). It writes the
//! file to a temporary folder, then times `batch::validate::validate` over it against the
//! sandbox's demo catalogue (no network), and prints seconds, rows per second and the process's
//! peak resident memory (VmHWM; the generator streams to disk, so the peak is the validator's).
//! Targets: ≤ 3 s and ≤ 200 MB on 2 cores.

use std::io::{BufWriter, Write};
use std::time::Instant;

use ccpayout::batch::parse::{Format, Limits};
use ccpayout::batch::validate::{NoKnownOrders, Rules, validate};
use ccpayout::catalogue::Catalogue;
use ccpayout::config::ApiGeneration;

fn main() {
    let rows = std::env::args()
        .skip_while(|a| a != "--rows")
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("batch.csv");
    let bytes = generate(&path, rows);

    let demo = ccpayout::sandbox::catalogue::Catalogue::demo();
    let catalogue = Catalogue::from_api(&demo.coins, &demo.chains).expect("demo catalogue");
    let limits = Limits::default();
    let rules = Rules {
        catalogue: &catalogue,
        generation: ApiGeneration::V2,
        default_merchant_pays_fee: false,
        limits: &limits,
    };

    let started = Instant::now();
    let file = std::fs::File::open(&path).expect("open");
    let validated = validate(
        Format::Csv,
        std::io::BufReader::with_capacity(1 << 16, file),
        &rules,
        &NoKnownOrders,
    );
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(validated.rows_seen, rows);
    assert!(
        validated.problems.is_empty(),
        "generated rows are valid: {:?}",
        validated.problems.first()
    );

    println!("ingest: {rows} rows, {:.1} MB CSV", bytes as f64 / 1e6);
    println!(
        "  parse + validate: {seconds:.2} s ({:.0} rows/s)",
        rows as f64 / seconds
    );
    println!(
        "  accepted rows: {}, text arena {:.1} MB",
        validated.rows.len(),
        validated.arena.len() as f64 / 1e6
    );
    match peak_rss_mb() {
        Some(mb) => println!("  peak RSS: {mb:.1} MB"),
        None => println!("  peak RSS: unavailable (no /proc/self/status)"),
    }
    println!("  targets: <= 3 s and <= 200 MB for 1,000,000 rows on 2 cores");
}

/// Writes `rows` realistic rows: USDT on TRX and POLYGON, some Cwallet, a few XRP with memos.
fn generate(path: &std::path::Path, rows: u64) -> u64 {
    let tron = [
        "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
        "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
        "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
    ];
    let evm = [
        "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d",
        "0x09a939da0a61353314b90d4bdcc7d7450c847008",
    ];
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    writeln!(out, "order_id,recipient,coin,chain,amount,memo,reference").expect("write");
    for i in 0..rows {
        let amount = format!("{}.{:02}", 1 + i % 997, i % 100);
        let line = match i % 10 {
            0..=5 => format!(
                "aff-{i:09},{},USDT,TRX,{amount},,partner {}",
                tron[(i % 3) as usize],
                i % 5000
            ),
            6 | 7 => format!(
                "aff-{i:09},{},USDT,POLYGON,{amount},,partner {}",
                evm[(i % 2) as usize],
                i % 5000
            ),
            8 => format!(
                "aff-{i:09},{},USDT,CWALLET,{amount},,creator {}",
                10_000_000 + i % 90_000_000,
                i % 5000
            ),
            _ => format!(
                "aff-{i:09},rsGgQno3NYMPso4zJyzxijJCMTEgcQh6nT,XRP,XRP,{amount},{},tag",
                1000 + i % 100_000
            ),
        };
        writeln!(out, "{line}").expect("write");
    }
    out.flush().expect("flush");
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
