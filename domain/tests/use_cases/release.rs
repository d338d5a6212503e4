//! The internal key release.

use std::sync::atomic::Ordering;

use crate::helpers::*;

#[test]
fn release_key_rules() {
    use domain::ReleaseError;
    let svc = service();
    let s = establish(&svc, "C", 1);
    let id = &s.kid()[8..];
    assert_eq!(
        run(svc.release_key(id, None)).unwrap_err(),
        ReleaseError::MissingClientId
    );
    assert_eq!(
        run(svc.release_key("S-1", Some("C"))).unwrap_err(),
        ReleaseError::MalformedId
    );
    assert_eq!(
        run(svc.release_key("S-00000000000000000000000000000000", Some("C"))).unwrap_err(),
        ReleaseError::NotFound
    );
    assert_eq!(
        run(svc.release_key(id, Some("X"))).unwrap_err(),
        ReleaseError::Forbidden
    );
    assert_eq!(
        run(svc.release_key(id, Some("C")))
            .unwrap()
            .record
            .keys
            .request()
            .expose(),
        s.key().expose()
    );
    svc.ports()
        .clock
        .0
        .store(NOW + 1800 * 1000 + 1, Ordering::SeqCst);
    assert_eq!(
        run(svc.release_key(id, Some("X"))).unwrap_err(),
        ReleaseError::Forbidden
    );
    assert_eq!(
        run(svc.release_key(id, Some("C"))).unwrap_err(),
        ReleaseError::Expired
    );
}
