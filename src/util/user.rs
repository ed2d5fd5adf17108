//! Who a local user is: the name of a uid, from the system's user database (getpwuid_r, so
//! NSS sources such as LDAP count too). Used to name approvers: the peer of the control socket,
//! or the process's own user working on the store.

/// The name of the user with `uid`, or `uid N` when the user database has none.
pub fn name_of(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero `passwd` is a valid value of the plain C struct; getpwuid_r only
    // writes into it and into `buf`, whose length it is given.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    loop {
        // SAFETY: every pointer is valid for the call and `buf.len()` is its length.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return format!("uid {uid}");
        }
        // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
}

/// The name of this process's effective user.
pub fn current() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    name_of(unsafe { libc::geteuid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_an_unknown_uid_are_named() {
        assert_eq!(name_of(0), "root");
        assert_eq!(name_of(4_000_000_123), "uid 4000000123");
        assert!(!current().is_empty());
    }
}
