//! Address checks for the listeners' settings. Pure.

use std::net::SocketAddr;

/// `Ok` when `addr` is a loopback address (`127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`);
/// otherwise an explanation for the operator. The configuration refuses any other address for
/// `daemon.metrics_listen`.
pub fn check_loopback(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "the metrics address {addr} is not a loopback address: the endpoint has no authentication and \
             shows payout activity to anyone who can reach it; bind it to 127.0.0.1 or ::1 and scrape it locally"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_pass() {
        for ok in ["127.0.0.1:9464", "127.1.2.3:1", "[::1]:9464", "[::ffff:127.0.0.1]:9464"] {
            let addr: SocketAddr = ok.parse().unwrap();
            assert_eq!(check_loopback(&addr), Ok(()), "{ok}");
        }
        for bad in ["0.0.0.0:9464", "192.168.1.10:9464", "[::]:9464", "[2001:db8::1]:9464"] {
            let addr: SocketAddr = bad.parse().unwrap();
            let err = check_loopback(&addr).unwrap_err();
            assert!(err.contains(bad) && err.contains("loopback"), "{err}");
        }
    }
}
