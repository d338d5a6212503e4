//! `POST /transaction/purchase`: the demo business route, an encrypted route
//! ([`PurchaseRoute`]) whose check applies the purchase rules and whose handler
//! confirms the purchase (docs/PROTOCOL.md §8.2).

use std::borrow::Cow;
use std::future::Future;

use domain::purchase::{Purchase, Receipt};
use domain::{EncryptedRoute, PayloadError, ResponseContext};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use hyper::StatusCode;

use crate::routes::exchange::HandlerFailure;
use crate::wire::is_json_object;

/// The purchase route.
#[derive(Debug, Clone, Copy)]
pub struct PurchaseRoute;

/// Why a checked purchase could not be confirmed (wire: 500 `INTERNAL_ERROR`).
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    /// The answer could not be serialised.
    #[error("the purchase answer could not be serialised: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// A purchase that passed the rules: the fields as the client sent them.
#[derive(Debug, Deserialize)]
pub struct CheckedPurchase<'p> {
    #[serde(rename = "schemeCode", borrow)]
    scheme_code: Cow<'p, str>,
    #[serde(borrow)]
    amount: &'p RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseResponse<'a> {
    status: &'a str,
    transaction_id: &'a str,
    scheme_code: &'a str,
    amount: &'a RawValue,
    timestamp: &'a str,
    message: &'a str,
}

impl HandlerFailure for PurchaseError {
    fn answer(&self) -> (StatusCode, &'static str) {
        (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
    }
}

impl EncryptedRoute for PurchaseRoute {
    type Checked<'p> = CheckedPurchase<'p>;
    type Error = PurchaseError;

    /// Parses the plaintext and applies the purchase rules.
    fn check<'p>(
        &self,
        plain: &'p [u8],
        _context: &ResponseContext,
    ) -> Result<CheckedPurchase<'p>, PayloadError> {
        if !is_json_object(plain) {
            return Err(PayloadError::Shape("plaintext is not a JSON object"));
        }
        let req: CheckedPurchase<'p> = serde_json::from_slice(plain)
            .map_err(|_| PayloadError::Shape("plaintext is not purchase JSON"))?;
        Purchase::validate(&req.scheme_code, req.amount.get())?;
        Ok(req)
    }

    /// Confirms the purchase and returns the answer's plaintext (JSON, §9 field order,
    /// `amount` echoed as sent).
    fn handle<'p>(
        &'p self,
        req: CheckedPurchase<'p>,
        context: ResponseContext,
    ) -> impl Future<Output = Result<Vec<u8>, PurchaseError>> + Send + 'p {
        let receipt = Receipt::confirm(
            &req.scheme_code,
            req.amount.get(),
            context.random,
            context.now_ms,
        );
        let resp = PurchaseResponse {
            status: "SUCCESS",
            transaction_id: &receipt.transaction_id,
            scheme_code: receipt.scheme_code,
            amount: req.amount,
            timestamp: &receipt.timestamp,
            message: &receipt.message,
        };
        std::future::ready(serde_json::to_vec(&resp).map_err(PurchaseError::from))
    }
}

#[cfg(test)]
mod tests {
    use hyper::StatusCode;

    use crate::routes::test_support::{App, body_json};

    #[tokio::test]
    async fn a_sealed_purchase_is_confirmed_and_its_replay_refused() {
        let app = App::new();
        let session = app.session("1").await;
        let sent = app.seal(&session, br#"{"schemeCode":"AEF","amount":5000}"#);
        let (status, resp) = app.post("/transaction/purchase", &sent).await;
        assert_eq!(status, StatusCode::OK);
        let answer = app.open(&session, &sent, resp).await;
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(v["status"], "SUCCESS");
        assert_eq!(v["schemeCode"], "AEF");
        assert_eq!(v["amount"], 5000);

        let (status, resp) = app.post("/transaction/purchase", &sent).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body_json(resp).await["error"], "CRYPTO_ERROR");
    }

    #[tokio::test]
    async fn an_invalid_purchase_is_a_generic_400() {
        let app = App::new();
        let session = app.session("1").await;
        let sent = app.seal(&session, br#"{"schemeCode":"AEF","amount":-1}"#);
        let (status, resp) = app.post("/transaction/purchase", &sent).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body_json(resp).await["error"], "CRYPTO_ERROR");
    }
}
