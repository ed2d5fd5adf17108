//! The webhook outbox: the jobs the world queues when a payout is created or settles (v2 and
//! v1 bodies, exact bytes) and [`World::take_webhooks`], which hands them to whoever delivers
//! them. Signing and delivery are the transport's job (`notifier.rs`, for the server).

use super::{Payout, World};
use crate::api::types::{RecordStatus, V1WithdrawWebhook, WebhookEvent, WebhookWithdrawal};

/// Which signature and body shape a webhook uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookScheme {
    /// `{"type":"ApiWithdrawal","msg":{..}}`, HMAC-SHA256.
    V2,
    /// The flat v1 body, SHA-256 with the secret inside.
    V1,
}

/// A webhook to send: the server's dispatcher signs and delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookJob {
    pub scheme: WebhookScheme,
    pub url: String,
    pub record_id: String,
    pub order_id: String,
    pub status: RecordStatus,
    /// The exact body to send (and sign).
    pub body: Vec<u8>,
}

impl World {
    /// Webhooks produced since the last call.
    pub fn take_webhooks(&mut self) -> Vec<WebhookJob> {
        std::mem::take(&mut self.outbox)
    }

    /// v2 network payouts get a `Processing` webhook on creation; Cwallet transfers get none
    /// (as documented) and v1 payouts only get the final one.
    pub(super) fn enqueue_processing_webhook(&mut self, idx: usize) {
        let payout = &self.payouts[idx];
        if payout.ledger.api != "v2" || payout.ledger.withdraw_type != "Network" {
            return;
        }
        if let Some(job) = self.v2_webhook(payout) {
            self.outbox.push(job);
        }
    }

    pub(super) fn enqueue_final_webhook(&mut self, idx: usize) {
        let payout = &self.payouts[idx];
        let job = if payout.ledger.api == "v1" {
            self.v1_webhook(payout)
        } else if payout.ledger.withdraw_type == "Network" {
            self.v2_webhook(payout)
        } else {
            None
        };
        if let Some(job) = job {
            self.outbox.push(job);
        }
    }

    fn v2_webhook(&self, payout: &Payout) -> Option<WebhookJob> {
        let url = payout.webhook_url.clone()?;
        let event = WebhookEvent {
            kind: "ApiWithdrawal".to_owned(),
            msg: WebhookWithdrawal {
                record_id: payout.ledger.record_id.clone(),
                order_id: payout.ledger.order_id.clone(),
                coin_id: payout.ledger.coin_id,
                coin_symbol: payout.ledger.coin_symbol.clone(),
                status: payout.ledger.status.clone(),
            },
        };
        Some(WebhookJob {
            scheme: WebhookScheme::V2,
            url,
            record_id: payout.ledger.record_id.clone(),
            order_id: payout.ledger.order_id.clone(),
            status: payout.ledger.status.clone(),
            body: serde_json::to_vec(&event).expect("wire types always serialise to JSON"),
        })
    }

    fn v1_webhook(&self, payout: &Payout) -> Option<WebhookJob> {
        let url = payout.webhook_url.clone()?;
        let (fee_coin_id, fee_symbol, fee_amount, fee_value) = self.v1_fee_fields(payout);
        let l = &payout.ledger;
        let body = V1WithdrawWebhook {
            pay_status: if l.status == RecordStatus::Success {
                "success"
            } else {
                "failed"
            }
            .to_owned(),
            order_type: "API Withdrawal".to_owned(),
            order_id: payout.ccp_order_id.clone(),
            record_id: l.record_id.clone(),
            withdraw_amount: l.amount.clone(),
            net_receivable: l.receiver_gets.clone(),
            network_fee: fee_amount,
            network_fee_crypto: fee_symbol,
            network_coin_id: fee_coin_id,
            network_fee_value: fee_value,
            chain: l.chain.clone(),
            contract: payout.contract.clone(),
            crypto: l.coin_symbol.clone(),
            to_address: l.to_address.clone(),
            memo: l.memo.clone(),
            // The v1 documentation's example for internal transfers.
            txid: if l.withdraw_type == "Cwallet" {
                "internal transfer".to_owned()
            } else {
                l.tx_id.clone()
            },
            merchant_order_id: l.order_id.clone(),
            merchant_pays_fee: l.merchant_pays_fee,
        };
        Some(WebhookJob {
            scheme: WebhookScheme::V1,
            url,
            record_id: l.record_id.clone(),
            order_id: l.order_id.clone(),
            status: l.status.clone(),
            body: serde_json::to_vec(&body).expect("wire types always serialise to JSON"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sandbox::DEMO_FAILING_ADDRESS;
    use crate::sandbox::world::testkit::*;

    #[test]
    fn v2_webhooks_on_creation_and_final_status() {
        let mut w = world_with(|c| c.webhook_url = Some("http://127.0.0.1:9/default".into()));
        let mut body = net("hook-1", 1280, "TRX", TRX_ADDR, "5");
        body["notifyUrl"] = "http://127.0.0.1:9/per-order".into();
        assert_eq!(create(&mut w, body).0, 10000);
        assert_eq!(
            create(&mut w, net("hook-2", 1280, "TRX", DEMO_FAILING_ADDRESS, "5")).0,
            10000
        );
        let first = w.take_webhooks();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].url, "http://127.0.0.1:9/per-order");
        assert_eq!(first[1].url, "http://127.0.0.1:9/default");
        assert_eq!(first[0].status, RecordStatus::Processing);
        let event: WebhookEvent = serde_json::from_slice(&first[0].body).expect("event");
        assert_eq!(event.kind, "ApiWithdrawal");
        assert_eq!(event.msg.order_id, "hook-1");
        assert_eq!(event.msg.coin_symbol, "USDT");
        w.settle_due(T0 + 2000);
        let last = w.take_webhooks();
        let statuses: Vec<_> = last.iter().map(|h| h.status.clone()).collect();
        assert_eq!(statuses, [RecordStatus::Success, RecordStatus::Failed]);
    }
}
