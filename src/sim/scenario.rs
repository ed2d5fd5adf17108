//! A run's world, drawn from its seed: the batches (valid rows on several chains and Cwallet,
//! rows that fail on chain, rows validation refuses), the settings ccpayout runs with, the API's
//! limits, the faults, the network's latency, and where the crashes fall.

use std::fmt::Write as _;
use std::time::Duration;

use crate::api::pacing::backoff::Jitter;
use crate::model::ApiGeneration;
use crate::model::bundle::Execution;
use crate::sandbox::demo::v1_token_id;
use crate::sandbox::direct::Latency;
use crate::sandbox::readings::RepeatedBatch;
use crate::sandbox::{DEMO_FAILING_ADDRESS, Faults, RateLimit, Readings, UnknownOrder};

/// Valid TRON addresses the sandbox pays.
const TRON: &[&str] = &[
    "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
    "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
    "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
    "TUiQkecwEdPGdN1ckK9Fs7UxP1GMwxuiKt",
    "TBaAYksiw4hhcrL8S8AzVWMPukTj1u1rea",
];
/// Valid EVM addresses.
const EVM: &[&str] = &[
    "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d",
    "0x09a939da0a61353314b90d4bdcc7d7450c847008",
];
/// Cwallet IDs the sandbox knows.
const CWALLET: &[&str] = &["9558861", "35255142"];

/// The seeded random source of a scenario (splitmix64, the crate's jitter generator).
pub struct Draw(Jitter);

impl Draw {
    pub fn new(seed: u64) -> Draw {
        Draw(Jitter::new(seed))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.0.next_unit() < p
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.next_unit()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.u64() % items.len() as u64) as usize]
    }
}

/// A row of a batch file, and what should become of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub order_id: String,
    pub recipient: String,
    pub coin: &'static str,
    pub chain: &'static str,
    pub amount: String,
    /// Validation refuses it (a bad address, or the same order_id twice in the file).
    pub refused: bool,
}

/// One batch file.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub name: String,
    pub rows: Vec<Row>,
}

impl BatchSpec {
    /// The file's text (CSV). A v1 account's rows also name their token (v1 selects coin and
    /// network by token id; a Cwallet transfer takes any token of the coin).
    pub fn csv(&self, generation: ApiGeneration) -> String {
        let mut out = String::from("order_id,recipient,coin,chain,amount,token_id\n");
        for row in &self.rows {
            let token = match generation {
                ApiGeneration::V2 => String::new(),
                ApiGeneration::V1 if row.chain == "CWALLET" => v1_token_id(row.coin, "TRX"),
                ApiGeneration::V1 => v1_token_id(row.coin, row.chain),
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{token}",
                row.order_id, row.recipient, row.coin, row.chain, row.amount
            );
        }
        out
    }
}

/// Everything a run is made of.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    /// The account's API: v2, or a legacy v1 account (whose whole job uses v1 endpoints).
    pub generation: ApiGeneration,
    /// How the simulated CCPayment reads what its documentation leaves open (§5).
    pub readings: Readings,
    pub batches: Vec<BatchSpec>,
    /// `limits.rate_per_second` and `burst`.
    pub rate: u32,
    pub burst: u32,
    pub concurrency: u32,
    /// The API's own rate limit: equal to ours, lower (so 11004 comes), or none.
    pub api_rate: Option<RateLimit>,
    /// Requests the API accepts per (shortened) day; 11009 beyond.
    pub daily_requests: Option<u64>,
    pub day_length: Duration,
    pub faults: Faults,
    /// Share of payouts that fail on chain.
    pub fail_rate: f64,
    pub settle_delay: Duration,
    pub latency: Latency,
    /// Remote checks (addresses, Cwallet users) in the preflight.
    pub remote_checks: bool,
    /// The polls each life gets before it is crashed, in order; the life after the last runs to
    /// the end.
    pub crashes: Vec<u64>,
    /// Virtual time between a crash and the restart.
    pub restart_delay: Duration,
    /// `api.request_timeout_ms`.
    pub request_timeout_ms: u64,
    /// `limits.not_found_confirm_secs`: at least the timeout, close above the lookup lag.
    pub not_found_confirm_secs: u64,
    /// `withdraw_mode = "batch"` (v2 only): CCPayment's execution mode and the confirm's delay
    /// in seconds; `None`: single creates.
    pub batch_mode: Option<(Execution, u64)>,
}

impl Scenario {
    /// The scenario of `seed`. `max_rows` bounds the rows of each batch.
    pub fn draw(seed: u64, max_rows: u64) -> Scenario {
        let mut d = Draw::new(seed);
        let generation = if d.chance(0.25) {
            ApiGeneration::V1
        } else {
            ApiGeneration::V2
        };
        let readings = readings(&mut d, generation);
        let n_batches = d.range(1, 3);
        let batches = (0..n_batches)
            .map(|b| {
                let n_rows = d.range(1, max_rows.max(1));
                batch(&mut d, seed, b, n_rows, generation)
            })
            .collect();
        let rate = *d.pick(&[5u32, 10, 20, 50]);
        let burst = d.range(1, 10) as u32;
        let api_rate = match d.range(0, 2) {
            0 => None,
            1 => Some(RateLimit {
                per_second: f64::from(rate),
                burst,
            }),
            _ => Some(RateLimit {
                per_second: f64::from(rate) * (0.3 + 0.6 * d.unit()),
                burst: d.range(1, burst.into()) as u32,
            }),
        };
        let on = |d: &mut Draw, p: f64, max: f64| if d.chance(p) { max * d.unit() } else { 0.0 };
        let faults = Faults {
            drop_after_commit: on(&mut d, 0.6, 0.2),
            drop_before_commit: on(&mut d, 0.4, 0.1),
            http_5xx: on(&mut d, 0.4, 0.1),
            internal_11002: on(&mut d, 0.4, 0.1),
            slow: on(&mut d, 0.3, 0.1),
            slow_delay_ms: d.range(100, 5_000),
            on_reads: d.chance(0.5),
        };
        let n_crashes = d.range(0, 6) as usize;
        let crashes = (0..n_crashes)
            .map(|_| {
                // Log-uniform from 1 to ~4000 polls: crashes right at the start (during the
                // preflight, the store's first commits) as often as deep into a run.
                let exp = d.unit() * 12.0;
                exp.exp2() as u64 + 1
            })
            .collect();
        let latency_max = d.range(0, 200);
        // Drawn last, so the draws above (and the seeds that once found a bug) stay as they were.
        // The request timeout, and the confirmation of an absence close to its bound: at least
        // the timeout and the lookup lag plus up to 3 s — the margin ccpayout relies on, probed
        // with requests that wait at the pacing after their intent is written.
        let request_timeout_ms = d.range(1_000, 30_000);
        let lag_ms = readings.lookup_lag.map_or(0, |l| l.as_millis() as u64);
        let confirm_ms = request_timeout_ms.max(lag_ms) + d.range(0, 1_000);
        let not_found_confirm_secs = confirm_ms.div_ceil(1000);
        // Drawn after everything else, so the scenarios of earlier seeds are unchanged: batch
        // mode on a third of v2 runs, with the batch readings of R14 each in a share of them.
        let mut readings = readings;
        let batch_mode = (generation == ApiGeneration::V2 && d.chance(0.35)).then(|| {
            readings.repeated_batch = match d.range(0, 2) {
                0 => RepeatedBatch::Refused,
                1 => RepeatedBatch::Idempotent,
                _ => RepeatedBatch::Reuse,
            };
            readings.batch_seq_unchecked = d.chance(0.5);
            readings.batch_review = d.chance(0.3).then(|| Duration::from_millis(d.range(100, 20_000)));
            readings.task_status_success = d.chance(0.5);
            let execution = if d.chance(0.5) {
                Execution::Batch
            } else {
                Execution::Single
            };
            let delay = if d.chance(0.3) { d.range(1, 120) } else { 0 };
            readings.batch_partial_apply = d.chance(0.3);
            (execution, delay)
        });
        Scenario {
            batch_mode,
            request_timeout_ms,
            not_found_confirm_secs,
            seed,
            generation,
            readings,
            batches,
            rate,
            burst,
            concurrency: d.range(1, 8) as u32,
            api_rate,
            daily_requests: d.chance(0.25).then(|| d.range(20, 200)),
            day_length: Duration::from_secs(d.range(30, 300)),
            faults,
            fail_rate: if d.chance(0.5) { 0.2 * d.unit() } else { 0.0 },
            settle_delay: Duration::from_millis(d.range(50, 5_000)),
            latency: Latency {
                min: Duration::from_millis(latency_max / 3),
                max: Duration::from_millis(latency_max),
            },
            remote_checks: d.chance(0.5),
            crashes,
            restart_delay: Duration::from_millis(d.range(0, 3_000)),
        }
    }

    /// Every order_id of every batch that validation accepts.
    pub fn accepted(&self) -> impl Iterator<Item = &Row> {
        self.batches.iter().flat_map(|b| b.rows.iter()).filter(|r| !r.refused)
    }
}

/// The readings of the API a run's CCPayment takes (ccpayment-api.md §5), each on in a share of
/// the runs: lookups that lag behind creates (by less than `not_found_confirm_secs`, the bound
/// ccpayout relies on), an unknown order answered as an empty or foreign record, no refusal of a
/// reused orderId, ids as strings, parameter-less calls that refuse `{}`, a coin about to be
/// delisted, and — for v1 accounts — every v2 call refused.
fn readings(d: &mut Draw, generation: ApiGeneration) -> Readings {
    Readings {
        lookup_lag: d.chance(0.3).then(|| Duration::from_millis(d.range(100, 10_000))),
        unknown_order: match d.range(0, 9) {
            0..=1 => UnknownOrder::EmptyRecord,
            2..=3 => UnknownOrder::OtherRecord,
            _ => UnknownOrder::NotFound,
        },
        no_order_uniqueness: d.chance(0.3),
        string_ids: d.chance(0.3),
        empty_body_only: d.chance(0.2),
        pre_delisting: d.chance(0.3),
        old_webhook_timestamps: false,
        v1_only: generation == ApiGeneration::V1 && d.chance(0.7),
        // The batch readings (R14) change only the batch routes, which the simulation's single
        // withdrawals never call.
        ..Readings::NONE
    }
}

/// A batch of `n_rows` rows: mostly valid payouts on TRX, POLYGON, BSC and to Cwallet IDs (and
/// USDC on POLYGON, the coin the `pre-delisting` reading marks), some to the sandbox's
/// always-failing address, some refused by validation.
fn batch(d: &mut Draw, seed: u64, b: u64, n_rows: u64, generation: ApiGeneration) -> BatchSpec {
    let mut rows: Vec<Row> = Vec::new();
    // A v1 account has one minimum per coin (the strictest of its networks: 10 USDT in the demo
    // catalogue); on v2, at least 5 USDT is above every network fee (1 USDT on TRX), so a row
    // meant to be paid is never refused for not covering its fee.
    let least_cents = match generation {
        ApiGeneration::V2 => 500,
        ApiGeneration::V1 => 1_500,
    };
    for i in 0..n_rows {
        let order_id = format!("sim{seed:x}-b{b}-{i:04}");
        let cents = d.range(least_cents, 50_000);
        let amount = if cents.is_multiple_of(100) {
            (cents / 100).to_string()
        } else {
            format!("{}.{:02}", cents / 100, cents % 100)
        };
        let kind = d.range(0, 99);
        let (coin, chain, recipient, refused) = match kind {
            0..=34 => ("USDT", "TRX", (*d.pick(TRON)).to_owned(), false),
            35..=49 => ("USDT", "POLYGON", (*d.pick(EVM)).to_owned(), false),
            50..=59 => ("USDC", "POLYGON", (*d.pick(EVM)).to_owned(), false),
            60..=69 => ("USDT", "BSC", (*d.pick(EVM)).to_owned(), false),
            70..=84 => ("USDT", "CWALLET", (*d.pick(CWALLET)).to_owned(), false),
            85..=91 => ("USDT", "TRX", DEMO_FAILING_ADDRESS.to_owned(), false),
            // Not a TRON address: refused by validation, never paid.
            92..=96 => ("USDT", "TRX", "TNotAnAddressAtAll000000000000000".to_owned(), true),
            // The same order_id as an earlier row of this file: both are refused as duplicates.
            _ => match rows.iter().rposition(|r| !r.refused) {
                Some(j) => {
                    rows[j].refused = true;
                    let earlier = rows[j].clone();
                    rows.push(Row {
                        refused: true,
                        amount,
                        ..earlier
                    });
                    continue;
                }
                None => ("USDT", "TRX", (*d.pick(TRON)).to_owned(), false),
            },
        };
        rows.push(Row {
            order_id,
            recipient,
            coin,
            chain,
            amount,
            refused,
        });
    }
    BatchSpec {
        name: format!("sim-{seed:x}-{b}.csv"),
        rows,
    }
}
