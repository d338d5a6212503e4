//! `POST /transaction/purchase`: the demo business route, an authenticated exchange
//! whose handler ([`purchase_response`]) applies the purchase rules (docs/PROTOCOL.md §8.2).

use domain::ResponseContext;
use domain::purchase::{PayloadError, Purchase};
use serde::{Deserialize, Serialize};

use crate::wire::is_json_object;

#[derive(Deserialize)]
struct PurchaseJson<'a> {
    #[serde(rename = "schemeCode", borrow)]
    scheme_code: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    amount: &'a serde_json::value::RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseResponse<'a> {
    status: &'a str,
    transaction_id: &'a str,
    scheme_code: &'a str,
    amount: &'a serde_json::value::RawValue,
    timestamp: &'a str,
    message: &'a str,
}

/// Parses a purchase plaintext, confirms it and returns the response plaintext (JSON,
/// §9 field order, `amount` echoed as sent).
///
/// # Errors
/// [`PayloadError`] for anything but a valid purchase.
pub fn purchase_response(plain: &[u8], context: &ResponseContext) -> Result<Vec<u8>, PayloadError> {
    if !is_json_object(plain) {
        return Err(PayloadError::Shape("plaintext is not a JSON object"));
    }
    let req: PurchaseJson<'_> = serde_json::from_slice(plain)
        .map_err(|_| PayloadError::Shape("plaintext is not purchase JSON"))?;
    let receipt = Purchase::validate(&req.scheme_code, req.amount.get())?
        .confirm(context.transaction_random, context.now_ms);
    let resp = PurchaseResponse {
        status: "SUCCESS",
        transaction_id: &receipt.transaction_id,
        scheme_code: receipt.scheme_code,
        amount: req.amount,
        timestamp: &receipt.timestamp,
        message: &receipt.message,
    };
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, &resp)
        .map_err(|_| PayloadError::Shape("response serialisation"))?;
    Ok(out)
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
