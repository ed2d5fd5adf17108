//! What the engine asks CCPayment, as a trait: create a withdrawal, look one up by orderId, list
//! records by orderIds a page at a time, and the v1 equivalents.
//!
//! The engine holds a `dyn Payouts` and never a concrete client, so its loop runs against
//! anything that answers these four questions. [`Client`] implements it over any
//! [`crate::api::client::Transport`]: HTTP in the product, the sandbox's world in process for
//! the deterministic simulation (`crate::sandbox::direct`). Every call passes the client's one
//! pacing; `cancel` ends a wait at its gate (the request is then not sent), never a request in
//! flight.

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::Client;
use super::error::CallError;
use super::types::{
    AbortBatchWithdrawReply, AbortBatchWithdrawRequest, AppendBatchWithdrawRequest, ApplyBatchWithdrawReply,
    ApplyBatchWithdrawRequest, BatchOrderQuery, BatchRecordListQuery, BatchRecordPage, BatchWithdrawOrder,
    ConfirmBatchWithdrawRequest, V1Bill, WithdrawRecord, WithdrawRecordListQuery, WithdrawRecordPage,
    WithdrawRecordQuery,
};
use crate::model::call::WithdrawCall;

/// The withdrawal calls and record queries the engine makes.
pub trait Payouts: Send + Sync {
    /// Sends a withdrawal create; the recordId when CCPayment returns one.
    fn withdraw<'a>(
        &'a self,
        call: &'a WithdrawCall,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Option<String>, CallError>>;

    /// One record by orderId (v2 `getAppWithdrawRecord`); 11003 when CCPayment has none.
    fn record<'a>(
        &'a self,
        order_id: &'a str,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<WithdrawRecord, CallError>>;

    /// One page of records by orderIds (v2 `getAppWithdrawRecordList`).
    fn record_page<'a>(
        &'a self,
        query: &'a WithdrawRecordListQuery,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<WithdrawRecordPage, CallError>>;

    /// v1 bills by merchant order id (at most 100).
    fn v1_bills<'a>(
        &'a self,
        merchant_order_ids: &'a [String],
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Vec<V1Bill>, CallError>>;

    /// The batch withdrawal family (`withdraw_mode = "batch"`): apply, append, confirm, abort,
    /// and the two reads that resolve every ambiguity.
    fn batch<'a>(&'a self, call: BatchCall<'a>, cancel: &'a CancellationToken) -> BoxFuture<'a, BatchAnswer>;
}

/// One request of the batch withdrawal family.
#[derive(Debug, Clone, Copy)]
pub enum BatchCall<'a> {
    Apply(&'a ApplyBatchWithdrawRequest),
    Append(&'a AppendBatchWithdrawRequest),
    Confirm(&'a ConfirmBatchWithdrawRequest),
    Abort(&'a AbortBatchWithdrawRequest),
    Order(&'a BatchOrderQuery),
    Records(&'a BatchRecordListQuery),
}

/// The answer to a [`BatchCall`], of the matching kind.
#[derive(Debug)]
pub enum BatchAnswer {
    /// `Ok(None)`: the account does not have the batch routes (nothing was created).
    Applied(Result<Option<ApplyBatchWithdrawReply>, CallError>),
    Appended(Result<(), CallError>),
    Confirmed(Result<BatchWithdrawOrder, CallError>),
    Aborted(Result<AbortBatchWithdrawReply, CallError>),
    Order(Result<BatchWithdrawOrder, CallError>),
    Records(Result<BatchRecordPage, CallError>),
}

impl Payouts for Client {
    fn withdraw<'a>(
        &'a self,
        call: &'a WithdrawCall,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Option<String>, CallError>> {
        let client = self.with_cancel(cancel.clone());
        Box::pin(async move {
            match call {
                WithdrawCall::Network(req) => client
                    .apply_app_withdraw_to_network(&req.into())
                    .await
                    .map(|r| Some(r.record_id)),
                WithdrawCall::Cwallet(req) => client
                    .apply_app_withdraw_to_cwallet(&req.into())
                    .await
                    .map(|r| Some(r.record_id)),
                WithdrawCall::V1(req) => client
                    .v1_withdraw(&req.into())
                    .await
                    .map(|r| Some(r.record_id).filter(|id| !id.is_empty())),
            }
        })
    }

    fn record<'a>(
        &'a self,
        order_id: &'a str,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<WithdrawRecord, CallError>> {
        let client = self.with_cancel(cancel.clone());
        Box::pin(async move {
            let query = WithdrawRecordQuery {
                order_id: Some(order_id.to_owned()),
                record_id: None,
            };
            client.get_app_withdraw_record(&query).await
        })
    }

    fn record_page<'a>(
        &'a self,
        query: &'a WithdrawRecordListQuery,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<WithdrawRecordPage, CallError>> {
        let client = self.with_cancel(cancel.clone());
        Box::pin(async move { client.get_app_withdraw_record_list(query).await })
    }

    fn v1_bills<'a>(
        &'a self,
        merchant_order_ids: &'a [String],
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Vec<V1Bill>, CallError>> {
        let client = self.with_cancel(cancel.clone());
        Box::pin(async move { client.v1_bill_info(merchant_order_ids).await })
    }

    fn batch<'a>(&'a self, call: BatchCall<'a>, cancel: &'a CancellationToken) -> BoxFuture<'a, BatchAnswer> {
        let client = self.with_cancel(cancel.clone());
        Box::pin(async move {
            match call {
                BatchCall::Apply(req) => BatchAnswer::Applied(client.apply_batch_withdraw(req).await),
                BatchCall::Append(req) => BatchAnswer::Appended(client.append_batch_withdraw(req).await),
                BatchCall::Confirm(req) => BatchAnswer::Confirmed(client.confirm_batch_withdraw(req).await),
                BatchCall::Abort(req) => BatchAnswer::Aborted(client.abort_batch_withdraw(req).await),
                BatchCall::Order(query) => BatchAnswer::Order(client.get_batch_withdraw_order(query).await),
                BatchCall::Records(query) => {
                    BatchAnswer::Records(client.get_batch_withdraw_order_record_list(query).await)
                }
            }
        })
    }
}
