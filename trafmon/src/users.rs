//! UID to user name, from the password database.

use trafmon_common::UID_NO_SOCKET;

/// The label of a UID: the user name, `(no socket)` for packets without a
/// socket, or the number where the password database has no entry.
pub fn label(uid: u32) -> String {
    if uid == UID_NO_SOCKET {
        return "(no socket)".into();
    }
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_unknown_uids_are_numbers() {
        assert_eq!(label(0), "root");
        assert_eq!(label(3_999_999_999), "3999999999");
        assert_eq!(label(UID_NO_SOCKET), "(no socket)");
    }
}
