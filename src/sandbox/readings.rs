//! The readings of the CCPayment API the sandbox can take where the public documentation is
//! silent (ccpayment-api.md §5, R1–R15): [`Readings`], one switch per reading, chosen per run so
//! ccpayout can be proven against each of them.
//!
//! With no reading on (the default) the sandbox behaves as documented in the module
//! documentation of [`crate::sandbox`]. Each reading replaces one of those choices with another
//! plausible reading of the same silence; readings combine freely, except the two answers to an
//! unknown orderId (`empty-record`, `other-record`) and the two answers to a reused batchOrderId
//! (`batch-apply-idempotent`, `batch-id-reuse`), which exclude each other.
//!
//! Names are what the command line (`ccpayout sandbox --reading NAME`), tests and CI use:
//! [`Readings::parse`] reads them and [`Readings::ALL_NAMES`] lists every one.

use std::fmt;
use std::time::Duration;

/// The lag of `lookup-lag` when its name carries none.
pub const DEFAULT_LOOKUP_LAG: Duration = Duration::from_millis(3000);

/// The demo coin that reports `Pre-delisting` under `pre-delisting`.
pub const PRE_DELISTING_COIN: &str = "USDC";

/// How long a confirmed batch stays `Reviewing` under `batch-review` when its name carries no
/// time.
pub const DEFAULT_BATCH_REVIEW: Duration = Duration::from_millis(5000);

/// What `getAppWithdrawRecord` answers for an orderId with no (visible) payout (R1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownOrder {
    /// Code 11003 (data does not exist).
    #[default]
    NotFound,
    /// Code 10000 with `"data":{"record":{}}`: every field absent, so empty or zero.
    EmptyRecord,
    /// Code 10000 with the record of the latest visible payout of another orderId, or the empty
    /// record when there is none.
    OtherRecord,
}

/// What `applyBatchWithdraw` answers for a batchOrderId already used (R14).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RepeatedBatch {
    /// Code 11007 (RepeatedSubmit); nothing stored.
    #[default]
    Refused,
    /// `batch-apply-idempotent`: code 10000 with the existing batch's ids; nothing added.
    Idempotent,
    /// `batch-id-reuse`: a second batch under the same id. Reads by the id see the first;
    /// confirm and abort by the id act on every batch with it (the reading that pays twice).
    Reuse,
}

/// Which readings are on. [`Default`] is none of them: today's behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readings {
    /// `lookup-lag` (R2): a payout becomes visible to `getAppWithdrawRecord`,
    /// `getAppWithdrawRecordList` and v1 `bill/info` only this long after its creation; creates
    /// see it at once.
    pub lookup_lag: Option<Duration>,
    /// `empty-record` / `other-record` (R1): the answer to a lookup of an unknown orderId.
    pub unknown_order: UnknownOrder,
    /// `no-order-uniqueness` (R3): a create with a used orderId (v2 or v1) makes another payout
    /// instead of answering 11011 or 11007.
    pub no_order_uniqueness: bool,
    /// `string-ids` (R4): every JSON number inside the `data` of a success reply is sent as a
    /// string.
    pub string_ids: bool,
    /// `empty-body-only` (R5): the parameter-less v2 calls refuse any body but an empty one with
    /// 11000 (by default both an empty body and `{}` are accepted).
    pub empty_body_only: bool,
    /// `pre-delisting` (R6): [`PRE_DELISTING_COIN`] reports status `Pre-delisting`; its
    /// withdrawals still work.
    pub pre_delisting: bool,
    /// `old-webhook-timestamps` (R11): webhook retries carry the first attempt's timestamp and
    /// signature instead of fresh ones.
    pub old_webhook_timestamps: bool,
    /// `batch-apply-idempotent` / `batch-id-reuse` (R14): the answer to a reused batchOrderId.
    pub repeated_batch: RepeatedBatch,
    /// `batch-seq-unchecked` (R14): a task seq repeated in a request or already in the batch is
    /// stored (and paid) instead of refused with 14027.
    pub batch_seq_unchecked: bool,
    /// `batch-partial-apply` (R14): an apply whose reply is lost after commit kept only the first
    /// half of its tasks (an apply that is not atomic), so the rest must be appended.
    pub batch_partial_apply: bool,
    /// `batch-review-reject` (R14): a confirmed batch is `Reviewing` (for `batch_review`, 5000 ms
    /// unless set) and then `Rejected` with a reason; none of its tasks runs.
    pub batch_review_reject: bool,
    /// `batch-review` (R14): a confirmed batch is `Reviewing` this long (world time) before it
    /// is `Pending`.
    pub batch_review: Option<Duration>,
    /// `task-status-success` (R14): a paid batch task reads `Success` instead of `Successful`.
    pub task_status_success: bool,
    /// `no-batch-withdraw` (R14): the account has none of the six batch routes; they answer as
    /// an unknown method does (a plain-text HTTP 404).
    pub no_batch_withdraw: bool,
    /// `v1-only` (R15): every v2 endpoint answers 11013 (NoSupportVersion); v1 works.
    pub v1_only: bool,
    /// `no-address-batch-check` (§2.8): the account has no `checkWithdrawAddress`; it is
    /// answered as an unknown method is (the router's plain-text HTTP 404), before the world.
    pub no_address_batch_check: bool,
}

/// One line of help per reading: (name, what it does). The order of [`Readings::ALL_NAMES`].
const DESCRIPTIONS: &[(&str, &str)] = &[
    ("lookup-lag", "R2: reads see a payout only MS (3000) after its creation"),
    (
        "empty-record",
        "R1: an unknown orderId answers 10000 with an empty record",
    ),
    (
        "other-record",
        "R1: an unknown orderId answers 10000 with another order's record",
    ),
    ("no-order-uniqueness", "R3: a reused orderId (v2 or v1) is paid again"),
    ("string-ids", "R4: every number in a success reply's data is a string"),
    (
        "empty-body-only",
        "R5: parameter-less v2 calls refuse a body of {} (11000)",
    ),
    ("pre-delisting", "R6: USDC is Pre-delisting; its withdrawals still work"),
    (
        "old-webhook-timestamps",
        "R11: webhook retries keep the first timestamp and sign",
    ),
    (
        "batch-apply-idempotent",
        "R14: a reused batchOrderId answers 10000 with the existing batch",
    ),
    (
        "batch-id-reuse",
        "R14: a reused batchOrderId makes a second batch; confirm and abort act on all",
    ),
    (
        "batch-seq-unchecked",
        "R14: a repeated task seq is stored (and paid) instead of 14027",
    ),
    (
        "batch-review",
        "R14: a confirmed batch is Reviewing for MS (5000) before Pending",
    ),
    (
        "batch-review-reject",
        "R14: a confirmed batch's review ends Rejected; no task runs",
    ),
    (
        "batch-partial-apply",
        "R14: an apply whose reply is lost keeps only the first half of its tasks",
    ),
    (
        "task-status-success",
        "R14: a paid batch task reads Success instead of Successful",
    ),
    (
        "no-batch-withdraw",
        "R14: the batch routes answer HTTP 404 like an unknown method",
    ),
    ("v1-only", "R15: every v2 call answers 11013 NoSupportVersion"),
    (
        "no-address-batch-check",
        "§2.8: checkWithdrawAddress is an unknown method (HTTP 404)",
    ),
];

/// The long help of `ccpayout sandbox --reading`: every name with its line. Written out (clap
/// wants a `'static` string) and kept in step with the descriptions above by a unit test.
pub const HELP: &str = "\
Takes a reading of the API where CCPayment's documentation is silent (ccpayment-api.md §5). \
Repeatable; several names may also be separated by commas. Without any, the sandbox behaves as \
documented.

  lookup-lag[=MS]         R2: reads see a payout only MS (3000) after its creation
  empty-record            R1: an unknown orderId answers 10000 with an empty record
  other-record            R1: an unknown orderId answers 10000 with another order's record
  no-order-uniqueness     R3: a reused orderId (v2 or v1) is paid again
  string-ids              R4: every number in a success reply's data is a string
  empty-body-only         R5: parameter-less v2 calls refuse a body of {} (11000)
  pre-delisting           R6: USDC is Pre-delisting; its withdrawals still work
  old-webhook-timestamps  R11: webhook retries keep the first timestamp and sign
  batch-apply-idempotent  R14: a reused batchOrderId answers 10000 with the existing batch
  batch-id-reuse          R14: a reused batchOrderId makes a second batch; confirm and abort act on all
  batch-seq-unchecked     R14: a repeated task seq is stored (and paid) instead of 14027
  batch-review[=MS]       R14: a confirmed batch is Reviewing for MS (5000) before Pending
  batch-partial-apply     R14: an apply whose reply is lost keeps only the first half of its tasks
  batch-review-reject     R14: a confirmed batch's review ends Rejected; no task runs
  task-status-success     R14: a paid batch task reads Success instead of Successful
  no-batch-withdraw       R14: the batch routes answer HTTP 404 like an unknown method
  v1-only                 R15: every v2 call answers 11013 NoSupportVersion
  no-address-batch-check  §2.8: checkWithdrawAddress is an unknown method (HTTP 404)";

impl Readings {
    /// Every reading's name, in the order of ccpayment-api.md's table. `lookup-lag` and
    /// `batch-review` also take `=MS`.
    pub const ALL_NAMES: &'static [&'static str] = &[
        "lookup-lag",
        "empty-record",
        "other-record",
        "no-order-uniqueness",
        "string-ids",
        "empty-body-only",
        "pre-delisting",
        "old-webhook-timestamps",
        "batch-apply-idempotent",
        "batch-id-reuse",
        "batch-seq-unchecked",
        "batch-review",
        "batch-review-reject",
        "batch-partial-apply",
        "task-status-success",
        "no-batch-withdraw",
        "v1-only",
        "no-address-batch-check",
    ];

    /// No reading: the documented behaviour.
    pub const NONE: Readings = Readings {
        lookup_lag: None,
        unknown_order: UnknownOrder::NotFound,
        no_order_uniqueness: false,
        string_ids: false,
        empty_body_only: false,
        pre_delisting: false,
        old_webhook_timestamps: false,
        repeated_batch: RepeatedBatch::Refused,
        batch_seq_unchecked: false,
        batch_partial_apply: false,
        batch_review_reject: false,
        batch_review: None,
        task_status_success: false,
        no_batch_withdraw: false,
        v1_only: false,
        no_address_batch_check: false,
    };

    /// The readings a spec names: one name of [`Readings::ALL_NAMES`] (`lookup-lag=MS` sets the
    /// lag, `batch-review=MS` the review time), several separated by commas, or `none`.
    ///
    /// # Errors
    ///
    /// An unknown name, a time that is not a whole number of milliseconds, both `empty-record`
    /// and `other-record`, or both `batch-apply-idempotent` and `batch-id-reuse`.
    pub fn parse(spec: &str) -> Result<Readings, String> {
        let mut readings = Readings::NONE;
        for part in spec.split(',').map(str::trim) {
            readings.merge(&Readings::parse_one(part)?)?;
        }
        Ok(readings)
    }

    fn parse_one(part: &str) -> Result<Readings, String> {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (part, None),
        };
        let mut r = Readings::NONE;
        if value.is_some() && name != "lookup-lag" && name != "batch-review" {
            return Err(format!("reading {name:?} takes no value (in {part:?})"));
        }
        let millis = |default: Duration| match value {
            None => Ok(default),
            Some(ms) => ms
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{name} wants milliseconds, like {name}=5000, got {part:?}")),
        };
        match name {
            "none" => {}
            "lookup-lag" => r.lookup_lag = Some(millis(DEFAULT_LOOKUP_LAG)?),
            "empty-record" => r.unknown_order = UnknownOrder::EmptyRecord,
            "other-record" => r.unknown_order = UnknownOrder::OtherRecord,
            "no-order-uniqueness" => r.no_order_uniqueness = true,
            "string-ids" => r.string_ids = true,
            "empty-body-only" => r.empty_body_only = true,
            "pre-delisting" => r.pre_delisting = true,
            "old-webhook-timestamps" => r.old_webhook_timestamps = true,
            "batch-apply-idempotent" => r.repeated_batch = RepeatedBatch::Idempotent,
            "batch-id-reuse" => r.repeated_batch = RepeatedBatch::Reuse,
            "batch-seq-unchecked" => r.batch_seq_unchecked = true,
            "batch-partial-apply" => r.batch_partial_apply = true,
            "batch-review-reject" => r.batch_review_reject = true,
            "batch-review" => r.batch_review = Some(millis(DEFAULT_BATCH_REVIEW)?),
            "task-status-success" => r.task_status_success = true,
            "no-batch-withdraw" => r.no_batch_withdraw = true,
            "v1-only" => r.v1_only = true,
            "no-address-batch-check" => r.no_address_batch_check = true,
            _ => {
                return Err(format!(
                    "unknown reading {name:?}; the readings are {}",
                    Readings::ALL_NAMES.join(", ")
                ));
            }
        }
        Ok(r)
    }

    /// Turns on every reading `other` has on as well. A lag or review time given twice keeps the
    /// later one.
    ///
    /// # Errors
    ///
    /// The two would answer an unknown orderId differently (`empty-record` and
    /// `other-record`), or a reused batchOrderId (`batch-apply-idempotent` and
    /// `batch-id-reuse`).
    pub fn merge(&mut self, other: &Readings) -> Result<(), String> {
        match (self.unknown_order, other.unknown_order) {
            (_, UnknownOrder::NotFound) => {}
            (UnknownOrder::NotFound, answer) => self.unknown_order = answer,
            (mine, theirs) if mine == theirs => {}
            _ => return Err("empty-record and other-record exclude each other".to_owned()),
        }
        match (self.repeated_batch, other.repeated_batch) {
            (_, RepeatedBatch::Refused) => {}
            (RepeatedBatch::Refused, answer) => self.repeated_batch = answer,
            (mine, theirs) if mine == theirs => {}
            _ => return Err("batch-apply-idempotent and batch-id-reuse exclude each other".to_owned()),
        }
        self.lookup_lag = other.lookup_lag.or(self.lookup_lag);
        self.batch_review = other.batch_review.or(self.batch_review);
        self.batch_seq_unchecked |= other.batch_seq_unchecked;
        self.batch_partial_apply |= other.batch_partial_apply;
        self.batch_review_reject |= other.batch_review_reject;
        self.task_status_success |= other.task_status_success;
        self.no_batch_withdraw |= other.no_batch_withdraw;
        self.no_order_uniqueness |= other.no_order_uniqueness;
        self.string_ids |= other.string_ids;
        self.empty_body_only |= other.empty_body_only;
        self.pre_delisting |= other.pre_delisting;
        self.old_webhook_timestamps |= other.old_webhook_timestamps;
        self.v1_only |= other.v1_only;
        self.no_address_batch_check |= other.no_address_batch_check;
        Ok(())
    }

    /// Whether no reading is on.
    pub fn is_none(&self) -> bool {
        *self == Readings::NONE
    }

    /// The names of the readings that are on, as [`Readings::parse`] reads them back
    /// (`lookup-lag=MS` with its lag).
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(lag) = self.lookup_lag {
            names.push(format!("lookup-lag={}", lag.as_millis()));
        }
        match self.unknown_order {
            UnknownOrder::NotFound => {}
            UnknownOrder::EmptyRecord => names.push("empty-record".to_owned()),
            UnknownOrder::OtherRecord => names.push("other-record".to_owned()),
        }
        for (on, name) in [
            (self.no_order_uniqueness, "no-order-uniqueness"),
            (self.string_ids, "string-ids"),
            (self.empty_body_only, "empty-body-only"),
            (self.pre_delisting, "pre-delisting"),
            (self.old_webhook_timestamps, "old-webhook-timestamps"),
        ] {
            if on {
                names.push(name.to_owned());
            }
        }
        match self.repeated_batch {
            RepeatedBatch::Refused => {}
            RepeatedBatch::Idempotent => names.push("batch-apply-idempotent".to_owned()),
            RepeatedBatch::Reuse => names.push("batch-id-reuse".to_owned()),
        }
        if self.batch_seq_unchecked {
            names.push("batch-seq-unchecked".to_owned());
        }
        if self.batch_partial_apply {
            names.push("batch-partial-apply".to_owned());
        }
        if self.batch_review_reject {
            names.push("batch-review-reject".to_owned());
        }
        if let Some(review) = self.batch_review {
            names.push(format!("batch-review={}", review.as_millis()));
        }
        for (on, name) in [
            (self.task_status_success, "task-status-success"),
            (self.no_batch_withdraw, "no-batch-withdraw"),
            (self.v1_only, "v1-only"),
            (self.no_address_batch_check, "no-address-batch-check"),
        ] {
            if on {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// The one-line description of a reading, by name.
    pub fn describe(name: &str) -> Option<&'static str> {
        DESCRIPTIONS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }

    /// Milliseconds of the lookup lag; 0 without `lookup-lag`.
    pub(crate) fn lookup_lag_ms(&self) -> i64 {
        self.lookup_lag
            .map_or(0, |lag| i64::try_from(lag.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds a confirmed batch is `Reviewing`; 0 without `batch-review`.
    /// How long a confirmed batch is `Reviewing`: `batch-review`'s time, or its default when
    /// only `batch-review-reject` is on (a review that rejects takes a while too).
    pub(crate) fn batch_review_ms(&self) -> i64 {
        let review = match (self.batch_review, self.batch_review_reject) {
            (Some(review), _) => Some(review),
            (None, true) => Some(DEFAULT_BATCH_REVIEW),
            (None, false) => None,
        };
        review.map_or(0, |review| i64::try_from(review.as_millis()).unwrap_or(i64::MAX))
    }
}

/// `none`, or the names of the readings that are on separated by spaces.
impl fmt::Display for Readings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_to_one_reading_and_prints_back() {
        for name in Readings::ALL_NAMES {
            let readings = Readings::parse(name).expect(name);
            assert!(!readings.is_none(), "{name}");
            let printed = readings.names();
            assert_eq!(printed.len(), 1, "{name}: {printed:?}");
            assert!(printed[0].starts_with(name), "{name}: {printed:?}");
            assert_eq!(Readings::parse(&printed[0]), Ok(readings), "{name}");
        }
    }

    #[test]
    fn the_help_lists_every_name_with_its_description() {
        assert_eq!(DESCRIPTIONS.len(), Readings::ALL_NAMES.len());
        for (&(name, line), all) in DESCRIPTIONS.iter().zip(Readings::ALL_NAMES) {
            assert_eq!(name, *all);
            let help_line = HELP
                .lines()
                .find(|l| l.trim_start().starts_with(name) && l.contains(line))
                .unwrap_or_else(|| panic!("{name} is not in the help with its description"));
            assert!(help_line.starts_with("  "), "{help_line}");
        }
    }

    #[test]
    fn lags_lists_and_errors() {
        assert_eq!(
            Readings::parse("lookup-lag").map(|r| r.lookup_lag),
            Ok(Some(DEFAULT_LOOKUP_LAG))
        );
        assert_eq!(Readings::parse("lookup-lag=5000").map(|r| r.lookup_lag_ms()), Ok(5000));
        let both = Readings::parse("string-ids, v1-only").expect("two");
        assert!(both.string_ids && both.v1_only);
        assert_eq!(both.to_string(), "string-ids v1-only");
        assert_eq!(Readings::parse("none"), Ok(Readings::NONE));
        assert_eq!(Readings::default(), Readings::NONE);
        assert_eq!(Readings::NONE.to_string(), "none");
        assert_eq!(Readings::NONE.lookup_lag_ms(), 0);
        assert_eq!(Readings::NONE.batch_review_ms(), 0);
        assert_eq!(
            Readings::parse("batch-review").map(|r| r.batch_review),
            Ok(Some(DEFAULT_BATCH_REVIEW))
        );
        assert_eq!(
            Readings::parse("batch-review=250").map(|r| r.batch_review_ms()),
            Ok(250)
        );
        let batch = Readings::parse("batch-id-reuse,batch-seq-unchecked,task-status-success").expect("three");
        assert_eq!(batch.repeated_batch, RepeatedBatch::Reuse);
        assert!(batch.batch_seq_unchecked && batch.task_status_success && !batch.no_batch_withdraw);
        assert_eq!(
            batch.to_string(),
            "batch-id-reuse batch-seq-unchecked task-status-success"
        );
        for bad in [
            "nope",
            "lookup-lag=soon",
            "lookup-lag=-1",
            "string-ids=1",
            "empty-record,other-record",
            "batch-apply-idempotent,batch-id-reuse",
            "batch-review=later",
            "no-batch-withdraw=1",
            "",
        ] {
            assert!(Readings::parse(bad).is_err(), "{bad:?}");
        }
        let err = Readings::parse("nope").expect_err("unknown");
        assert!(
            err.contains("lookup-lag") && err.starts_with("unknown reading"),
            "{err}"
        );
        let mut r = Readings::parse("empty-record").expect("one");
        assert!(r.merge(&Readings::parse("empty-record").expect("same")).is_ok());
        assert!(r.merge(&Readings::parse("other-record").expect("other")).is_err());
        let mut r = Readings::parse("batch-id-reuse").expect("one");
        assert!(r.merge(&Readings::parse("batch-id-reuse").expect("same")).is_ok());
        assert!(
            r.merge(&Readings::parse("batch-apply-idempotent").expect("other"))
                .is_err()
        );
    }
}
