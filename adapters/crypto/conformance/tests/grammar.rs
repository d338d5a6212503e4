//! The `X-Idempotency-Key` parser accepts exactly the grammar: checked against the one
//! oracle of it, the fuzz target's.

use crypto_conformance::fuzz::idempotency_key_grammar;
use domain::IdempotencyKey;
use proptest::prelude::*;

proptest! {
    #[test]
    fn parser_accepts_exactly_the_grammar(s in "[0-9]{0,18}[.]?[A-Za-z0-9_.|: -]{0,140}") {
        prop_assert_eq!(IdempotencyKey::parse(&s).is_ok(), idempotency_key_grammar(&s));
    }
}
