//! Generated batch files and the ledger checks that prove each order was paid exactly once.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, bail};
use ccpayout::api::types::RecordStatus;
use ccpayout::sandbox::Ledger;

/// Valid TRON addresses the sandbox pays normally.
pub const TRON: [&str; 3] = [
    "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
    "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
    "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
];

/// The order id of row `i` of a batch with this prefix.
pub fn order_id(prefix: &str, i: u64) -> String {
    format!("{prefix}-{i:07}")
}

/// `rows` USDT payouts of 2 on TRX (the fee of 1 comes out of the amount), ids
/// [`order_id`]`(prefix, 0..rows)`. Streams to disk.
pub fn write_trx_batch(path: &Path, prefix: &str, rows: u64) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "order_id,recipient,coin,chain,amount")?;
    for i in 0..rows {
        writeln!(out, "{},{},USDT,TRX,2", order_id(prefix, i), TRON[(i % 3) as usize])?;
    }
    out.flush()?;
    Ok(())
}

/// Valid EVM addresses (POLYGON and BSC) the sandbox pays normally.
pub const EVM: [&str; 2] = [
    "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d",
    "0x09a939da0a61353314b90d4bdcc7d7450c847008",
];

/// The batch-mode benchmark's file: `rows` USDT payouts of 2, in turn on TRX, POLYGON and BSC,
/// the merchant paying every fee (so each row can be a task of a batch withdrawal), ids
/// [`order_id`]`(prefix, 0..rows)`.
pub fn write_batch_mode_batch(path: &Path, prefix: &str, rows: u64) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "order_id,recipient,coin,chain,amount,merchant_pays_fee")?;
    for i in 0..rows {
        let id = order_id(prefix, i);
        match i % 3 {
            0 => writeln!(out, "{id},{},USDT,TRX,2,true", TRON[(i / 3 % 3) as usize]),
            1 => writeln!(out, "{id},{},USDT,POLYGON,2,true", EVM[(i / 3 % 2) as usize]),
            _ => writeln!(out, "{id},{},USDT,BSC,2,true", EVM[(i / 3 % 2) as usize]),
        }?;
    }
    out.flush()?;
    Ok(())
}

/// The ingest benchmark's file: realistic affiliate rows (USDT on TRX and POLYGON, Cwallet, XRP
/// with memos), with a memo and a reference column. Returns its size in bytes.
pub fn write_mixed_batch(path: &Path, rows: u64) -> anyhow::Result<u64> {
    let evm = EVM;
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "order_id,recipient,coin,chain,amount,memo,reference")?;
    for i in 0..rows {
        let amount = format!("{}.{:02}", 1 + i % 997, i % 100);
        match i % 10 {
            0..=5 => writeln!(
                out,
                "aff-{i:09},{},USDT,TRX,{amount},,partner {}",
                TRON[(i % 3) as usize],
                i % 5000
            ),
            6 | 7 => writeln!(
                out,
                "aff-{i:09},{},USDT,POLYGON,{amount},,partner {}",
                evm[(i % 2) as usize],
                i % 5000
            ),
            8 => writeln!(
                out,
                "aff-{i:09},{},USDT,CWALLET,{amount},,creator {}",
                10_000_000 + i % 90_000_000,
                i % 5000
            ),
            _ => writeln!(
                out,
                "aff-{i:09},rsGgQno3NYMPso4zJyzxijJCMTEgcQh6nT,XRP,XRP,{amount},{},tag",
                1000 + i % 100_000
            ),
        }?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Payouts per order_id, after checking that none was paid twice and that every payout belongs
/// to the batch (`prefix`). A payout's order_id is its merchant reference
/// ([`LedgerPayout::merchant_ref`](ccpayout::sandbox::LedgerPayout::merchant_ref)): a single
/// withdrawal's orderId, a batch task's remark (its orderId is CCPayment's own).
pub fn paid_at_most_once<'a>(ledger: &'a Ledger, prefix: &str) -> anyhow::Result<HashMap<&'a str, RecordStatus>> {
    let mut paid: HashMap<&str, RecordStatus> = HashMap::with_capacity(ledger.payouts.len());
    let own = format!("{prefix}-");
    for p in &ledger.payouts {
        let reference = p.merchant_ref();
        if !reference.starts_with(&own) {
            bail!("the ledger has a payout for {reference:?}, which is not in the batch");
        }
        if paid.insert(reference, p.status.clone()).is_some() {
            bail!("order {reference} was paid twice (ledger)");
        }
    }
    Ok(paid)
}

/// Checks that each of the `rows` orders of the batch was paid exactly once and succeeded.
pub fn paid_exactly_once(ledger: &Ledger, prefix: &str, rows: u64) -> anyhow::Result<()> {
    let paid = paid_at_most_once(ledger, prefix)?;
    let mut missing = 0u64;
    let mut first_missing = None;
    for i in 0..rows {
        let id = order_id(prefix, i);
        match paid.get(id.as_str()) {
            None => {
                missing += 1;
                first_missing.get_or_insert(id);
            }
            Some(RecordStatus::Success) => {}
            Some(other) => bail!("order {id} ended {} in the ledger, not Success", other.as_str()),
        }
    }
    if missing > 0 {
        bail!(
            "{missing} of {rows} orders were never paid (first: {})",
            first_missing.unwrap_or_default()
        );
    }
    if paid.len() as u64 != rows {
        bail!("the ledger has {} payouts for a batch of {rows} orders", paid.len());
    }
    Ok(())
}
