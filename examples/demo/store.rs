//! The demo's in-memory data: users, sessions and configuration, reset at each start.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

/// The seeded users of the demo contract: id, name, role, password.
pub(crate) const SEEDED_USERS: [(u64, &str, Role, &str); 3] = [
    (1, "alice", Role::Admin, "alice-password"),
    (2, "bob", Role::Viewer, "bob-password"),
    (3, "carol", Role::Editor, "carol-password"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Admin,
    Editor,
    Viewer,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) role: Role,
    #[serde(skip)]
    pub(crate) password_hash: String,
}

impl User {
    /// The actor the audit trail records for this user.
    pub(crate) fn actor(&self) -> audit_layer::Actor {
        audit_layer::Actor::user(self.id.to_string())
            .with_name(self.name.clone())
            .with_role(self.role.as_str())
    }
}

#[derive(Debug)]
pub(crate) struct Store {
    users: RwLock<BTreeMap<u64, User>>,
    sessions: RwLock<HashMap<String, u64>>,
    /// Verified against for unknown user names, so timing does not reveal which names exist.
    dummy_hash: String,
}

/// Hashes a password with Argon2id and a random salt.
pub(crate) fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    pub(crate) fn seeded() -> Result<Self, String> {
        let mut users = BTreeMap::new();
        for (id, name, role, password) in SEEDED_USERS {
            let password_hash = hash_password(password)?;
            users.insert(
                id,
                User {
                    id,
                    name: name.to_owned(),
                    role,
                    password_hash,
                },
            );
        }
        Ok(Self {
            users: RwLock::new(users),
            sessions: RwLock::new(HashMap::new()),
            dummy_hash: hash_password("not-a-real-password")?,
        })
    }

    /// The user with this name and password, if they match.
    pub(crate) fn authenticate(&self, name: &str, password: &str) -> Option<User> {
        let user = read(&self.users).values().find(|u| u.name == name).cloned();
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let valid = verify_password(password, hash);
        user.filter(|_| valid)
    }

    pub(crate) fn user(&self, id: u64) -> Option<User> {
        read(&self.users).get(&id).cloned()
    }

    /// Opens a session for `user` and returns its token.
    pub(crate) fn open_session(&self, user: u64) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write(&self.sessions).insert(token.clone(), user);
        token
    }

    pub(crate) fn session_user(&self, token: &str) -> Option<User> {
        let id = *read(&self.sessions).get(token)?;
        self.user(id)
    }

    pub(crate) fn close_session(&self, token: &str) -> bool {
        write(&self.sessions).remove(token).is_some()
    }
}
