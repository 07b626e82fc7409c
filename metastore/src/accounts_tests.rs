//! The accounts' unit tests: tokens, names, passwords, sessions and tombstones.

use super::*;

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// A login's answer does not say whether the name exists: an unknown user (or one without a password) costs
/// an Argon2 verification like a wrong password does (before, 1 ms against 17-31 ms). The bound is loose (a
/// quarter) so a loaded machine cannot fail it; the difference it guards against is twentyfold.
#[test]
fn an_unknown_user_costs_as_much_as_a_wrong_password() {
    let dir = std::env::temp_dir().join(format!("skyshard-logins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let accounts = Accounts::new(&dir);
    let w = accounts.writer().unwrap();
    w.add_user("ada", &[], false, 1).unwrap();
    w.add_user("bob", &[], false, 1).unwrap();
    w.set_password("ada", "a long password").unwrap();
    let median = |name: &str| {
        let mut times: Vec<_> = (0..5)
            .map(|_| {
                let start = std::time::Instant::now();
                assert!(accounts.check_password(name, "a wrong guess").unwrap().is_none());
                start.elapsed()
            })
            .collect();
        times.sort();
        times[2]
    };
    let wrong = median("ada");
    for other in ["nobody", "bob"] {
        let t = median(other);
        assert!(t * 4 >= wrong, "{other}: {t:?} against a wrong password's {wrong:?}");
    }
    assert!(accounts.check_password("ada", "a long password").unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A removed user's name is not given to a new account while their data may remain; once forgotten, it is.
#[test]
fn a_removed_user_s_name_stays_taken_until_forgotten() {
    let dir = std::env::temp_dir().join(format!("skyshard-tombstone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let accounts = Accounts::new(&dir);
    let w = accounts.writer().unwrap();
    w.add_user("ada", &[], false, 1).unwrap();
    let (_, token) = w.create_token("ada", &scopes(&["read:tap"]), None, 1).unwrap();
    w.remove_user("ada").unwrap();
    assert!(accounts.user("ada").unwrap().is_none());
    assert!(accounts.removed("ada").unwrap());
    assert!(matches!(accounts.check(&token, 2).unwrap(), Err(Refusal::Unknown)));
    let refused = w.add_user("ada", &[], false, 2).unwrap_err();
    assert!(matches!(refused, AccountError::Removed(_)));
    assert!(refused.to_string().contains("skyshard user delete"), "{refused}");
    w.forget_user("ada").unwrap();
    assert!(!accounts.removed("ada").unwrap());
    w.add_user("ada", &[], false, 3).unwrap();
    assert!(matches!(w.forget_user("cy"), Err(AccountError::NoUser(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Logout ends a login session's token, never a token made with `token create`.
#[test]
fn only_a_session_s_own_token_is_a_session() {
    let dir = std::env::temp_dir().join(format!("skyshard-sessions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let accounts = Accounts::new(&dir);
    let w = accounts.writer().unwrap();
    w.add_user("ada", &[], false, 1).unwrap();
    let (_, made) = w.create_token("ada", &scopes(&["read:tap"]), None, 1).unwrap();
    let (record, session) = w.create_session("ada", &scopes(&["read:tap"]), 100, 1).unwrap();
    assert_eq!(accounts.session_of(&made).unwrap(), None);
    assert_eq!(accounts.session_of(&session).unwrap(), Some(record.id.clone()));
    // The id with a wrong secret is not the session.
    let forged = format!("sky_{}_{}", record.id, "0".repeat(64));
    assert_eq!(accounts.session_of(&forged).unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tokens_check_expire_and_revoke() {
    let dir = std::env::temp_dir().join(format!("skyshard-accounts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let accounts = Accounts::new(&dir);
    assert!(!accounts.any());
    let w = accounts.writer().unwrap();
    w.add_user("ada", &["optics".into(), "optics".into()], false, 1)
        .unwrap();
    w.add_user("root", &[], true, 1).unwrap();
    assert!(matches!(
        w.add_user("ada", &[], false, 2),
        Err(AccountError::Exists(_))
    ));
    assert!(matches!(
        w.add_user("../x", &[], false, 2),
        Err(AccountError::BadName(_))
    ));
    assert!(matches!(
        w.add_user("Ada", &[], false, 2),
        Err(AccountError::BadName(_))
    ));
    // A user named like a group's space would own it (issue 33 item 2).
    assert!(matches!(
        w.add_user("group_optics", &[], false, 2),
        Err(AccountError::BadName(_))
    ));
    assert!(matches!(
        w.create_token("ada", &scopes(&["admin"]), None, 5),
        Err(AccountError::NotAdmin(_))
    ));
    assert!(matches!(
        w.create_token("ada", &scopes(&["read:everything"]), None, 5),
        Err(AccountError::BadScope(_))
    ));
    let (_, token) = w
        .create_token("ada", &scopes(&["read:tap"]), Some(1_000), 5)
        .unwrap();
    let who = accounts.check(&token, 999).unwrap().unwrap();
    assert_eq!(
        (who.user.as_str(), who.groups.clone()),
        ("ada", vec!["optics".to_string()])
    );
    assert!(who.may("read:tap") && !who.may("admin"));
    assert_eq!(
        accounts.check(&token, 1_000).unwrap(),
        Err(Refusal::Expired)
    );
    // Nothing in the files gives the token away.
    let stored = std::fs::read_to_string(accounts.token_path(&who.token)).unwrap();
    assert!(!stored.contains(&token[21..]));
    // A secret one digit off, a made-up id, garbage: refused alike.
    let mut wrong = token.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    assert_eq!(accounts.check(&wrong, 0).unwrap(), Err(Refusal::Unknown));
    assert_eq!(
        accounts
            .check(&format!("sky_{}_{}", "0".repeat(16), "0".repeat(64)), 0)
            .unwrap(),
        Err(Refusal::Unknown)
    );
    for bad in [
        "",
        "sky_",
        "Bearer x",
        "sky_../../etc_passwd",
        &"sky_".repeat(1000),
    ] {
        assert_eq!(
            accounts.check(bad, 0).unwrap(),
            Err(Refusal::Malformed),
            "{bad}"
        );
    }
    let (_, forever) = w
        .create_token("root", &scopes(&["read:tap", "admin"]), None, 5)
        .unwrap();
    assert!(
        accounts
            .check(&forever, u64::MAX)
            .unwrap()
            .unwrap()
            .may("admin")
    );
    w.revoke(&forever).unwrap();
    assert_eq!(accounts.check(&forever, 0).unwrap(), Err(Refusal::Unknown));
    // Passwords: hashed, checked, never stored in clear.
    assert!(matches!(
        w.set_password("ada", "short"),
        Err(AccountError::WeakPassword)
    ));
    w.set_password("ada", "correct horse battery").unwrap();
    assert!(
        accounts
            .check_password("ada", "correct horse battery")
            .unwrap()
            .is_some()
    );
    assert!(
        accounts
            .check_password("ada", "correct horse batterY")
            .unwrap()
            .is_none()
    );
    assert!(
        accounts
            .check_password("root", "correct horse battery")
            .unwrap()
            .is_none()
    );
    let stored = std::fs::read_to_string(accounts.user_path("ada")).unwrap();
    assert!(stored.contains("$argon2id$") && !stored.contains("horse"));
    // Removing a user revokes their tokens.
    let (_, other) = w
        .create_token("ada", &scopes(&["read:tap"]), None, 5)
        .unwrap();
    w.remove_user("ada").unwrap();
    assert_eq!(accounts.check(&other, 0).unwrap(), Err(Refusal::Unknown));
    assert_eq!(accounts.users().unwrap().len(), 1);
    // One writer at a time.
    assert!(accounts.writer().is_err());
    drop(w);
    assert!(accounts.writer().is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quotas_of_users_and_groups_reach_the_identity() {
    let dir = std::env::temp_dir().join(format!("skyshard-quotas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let accounts = Accounts::new(&dir);
    let w = accounts.writer().unwrap();
    w.add_user("ada", &["optics".into(), "radio".into()], false, 1)
        .unwrap();
    let (_, token) = w
        .create_token("ada", &scopes(&["read:tap"]), Some(10), 1)
        .unwrap();
    let (_, keep) = w
        .create_token("ada", &scopes(&["read:tap"]), None, 1)
        .unwrap();
    let q = w
        .set_user_quota(
            "ada",
            Quota {
                jobs: Some(2),
                tables_mb: Some(5),
                ..Quota::default()
            },
        )
        .unwrap();
    assert_eq!((q.jobs, q.tables_mb, q.sync), (Some(2), Some(5), None));
    // A later change keeps what it does not name; 0 puts a limit back to the default.
    let q = w
        .set_user_quota(
            "ada",
            Quota {
                jobs: Some(0),
                sync: Some(3),
                ..Quota::default()
            },
        )
        .unwrap();
    assert_eq!((q.jobs, q.tables_mb, q.sync), (None, Some(5), Some(3)));
    w.set_group_quota(
        "optics",
        Quota {
            results_mb: Some(1),
            ..Quota::default()
        },
    )
    .unwrap();
    assert!(matches!(
        w.set_group_quota("Bad Name", Quota::default()),
        Err(AccountError::BadName(_))
    ));
    assert!(matches!(
        w.set_user_quota("nobody", Quota::default()),
        Err(AccountError::NoUser(_))
    ));
    let identity = accounts.check(&token, 5).unwrap().unwrap();
    assert_eq!(identity.quota.sync, Some(3));
    // Only the groups with limits are listed (radio has none).
    assert_eq!(
        identity.group_quotas,
        vec![(
            "optics".to_string(),
            Quota {
                results_mb: Some(1),
                ..Quota::default()
            }
        )]
    );
    // Expired tokens are swept; the others stay.
    assert_eq!(w.sweep_expired(10).unwrap(), 1);
    assert_eq!(accounts.check(&token, 5).unwrap(), Err(Refusal::Unknown));
    assert!(accounts.check(&keep, 5).unwrap().is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
