//! The demo's in-memory data: users, sessions, configuration and accounts, reset at each
//! start. The record types derive `Auditable`: that is all it takes for sensitive handlers to
//! record their before and after state, with password hashes redacted.

use audit_layer::auth::LoginFailure;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use audit_layer::sensitive::Snapshot;
use audit_layer::{Auditable, BoxError};
use serde::{Deserialize, Serialize};

use crate::AppState;

/// The seeded users of the demo contract: id, name, role, password.
pub(crate) const SEEDED_USERS: [(u64, &str, Role, &str); 3] = [
    (1, "alice", Role::Admin, "alice-password"),
    (2, "bob", Role::Viewer, "bob-password"),
    (3, "carol", Role::Editor, "carol-password"),
];

/// The seeded configuration entries.
const SEEDED_CONFIG: [(&str, &str); 3] = [
    ("max_upload_mb", "10"),
    ("maintenance_mode", "false"),
    ("session_ttl_minutes", "30"),
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

/// A user account. The API never shows the hash (`serde(skip)`), and the trail records it
/// only as `"[REDACTED]"` (`audit(redact)`), noting when it changed.
#[derive(Clone, Debug, Serialize, Auditable)]
#[audit(resource = "user")]
pub(crate) struct User {
    #[audit(id)]
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) role: Role,
    #[serde(skip)]
    #[audit(redact)]
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

/// One configuration entry: `config:max_upload_mb`.
#[derive(Clone, Debug, Serialize, Auditable)]
#[audit(resource = "config")]
pub(crate) struct ConfigEntry {
    #[audit(id)]
    pub(crate) key: String,
    pub(crate) value: serde_json::Value,
}

/// A user's account balance: `account:bob`.
#[derive(Clone, Debug, Serialize, Auditable)]
#[audit(resource = "account")]
pub(crate) struct Account {
    #[audit(id)]
    pub(crate) user: String,
    pub(crate) balance: i64,
}

#[derive(Debug)]
pub(crate) struct Store {
    users: RwLock<BTreeMap<u64, User>>,
    sessions: RwLock<HashMap<String, u64>>,
    config: RwLock<BTreeMap<String, serde_json::Value>>,
    balances: RwLock<BTreeMap<String, i64>>,
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
        let mut balances = BTreeMap::new();
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
            balances.insert(name.to_owned(), 100);
        }
        let config = SEEDED_CONFIG
            .iter()
            .map(|(key, value)| {
                let value = serde_json::from_str(value).map_err(|e| e.to_string())?;
                Ok(((*key).to_owned(), value))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            users: RwLock::new(users),
            sessions: RwLock::new(HashMap::new()),
            config: RwLock::new(config),
            balances: RwLock::new(balances),
            dummy_hash: hash_password("not-a-real-password")?,
        })
    }

    /// The user with this name and password, if they match.
    /// The user whose name and password these are, or why not. An unknown name is checked
    /// against a dummy hash, so that it takes as long as a wrong password.
    pub(crate) fn authenticate(&self, name: &str, password: &str) -> Result<User, LoginFailure> {
        let user = read(&self.users).values().find(|u| u.name == name).cloned();
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let valid = verify_password(password, hash);
        match user {
            Some(user) if valid => Ok(user),
            Some(_) => Err(LoginFailure::BadPassword),
            None => Err(LoginFailure::UnknownUser),
        }
    }

    pub(crate) fn user(&self, id: u64) -> Option<User> {
        read(&self.users).get(&id).cloned()
    }

    pub(crate) fn users(&self) -> Vec<User> {
        read(&self.users).values().cloned().collect()
    }

    /// Adds a user; `None` if the name is taken.
    pub(crate) fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: String,
    ) -> Option<User> {
        let mut users = write(&self.users);
        if users.values().any(|u| u.name == name) {
            return None;
        }
        let id = users.keys().max().copied().unwrap_or(0) + 1;
        let user = User {
            id,
            name: name.to_owned(),
            role,
            password_hash,
        };
        users.insert(id, user.clone());
        write(&self.balances).insert(name.to_owned(), 0);
        Some(user)
    }

    pub(crate) fn set_role(&self, id: u64, role: Role) -> Option<User> {
        let mut users = write(&self.users);
        let user = users.get_mut(&id)?;
        user.role = role;
        Some(user.clone())
    }

    pub(crate) fn set_password_hash(&self, id: u64, hash: String) -> bool {
        write(&self.users)
            .get_mut(&id)
            .map(|user| user.password_hash = hash)
            .is_some()
    }

    /// Removes a user and their sessions.
    pub(crate) fn delete_user(&self, id: u64) -> bool {
        let removed = write(&self.users).remove(&id).is_some();
        if removed {
            write(&self.sessions).retain(|_, user| *user != id);
        }
        removed
    }

    pub(crate) fn config_entry(&self, key: &str) -> Option<ConfigEntry> {
        read(&self.config).get(key).map(|value| ConfigEntry {
            key: key.to_owned(),
            value: value.clone(),
        })
    }

    /// Updates an existing entry; `None` for an unknown key.
    pub(crate) fn set_config(&self, key: &str, value: serde_json::Value) -> Option<ConfigEntry> {
        let mut config = write(&self.config);
        let slot = config.get_mut(key)?;
        *slot = value.clone();
        Some(ConfigEntry {
            key: key.to_owned(),
            value,
        })
    }

    pub(crate) fn account(&self, user: &str) -> Option<Account> {
        read(&self.balances).get(user).map(|balance| Account {
            user: user.to_owned(),
            balance: *balance,
        })
    }

    pub(crate) fn set_balance(&self, user: &str, balance: i64) -> Option<Account> {
        let mut balances = write(&self.balances);
        let slot = balances.get_mut(user)?;
        *slot = balance;
        Some(Account {
            user: user.to_owned(),
            balance,
        })
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

// How sensitive handlers read the current state of each resource: once per type.

impl Snapshot<Arc<AppState>> for User {
    type Key = u64;

    async fn load(state: &Arc<AppState>, id: &u64) -> Result<Option<Self>, BoxError> {
        Ok(state.store.user(*id))
    }
}

impl Snapshot<Arc<AppState>> for ConfigEntry {
    type Key = String;

    async fn load(state: &Arc<AppState>, key: &String) -> Result<Option<Self>, BoxError> {
        Ok(state.store.config_entry(key))
    }
}

impl Snapshot<Arc<AppState>> for Account {
    type Key = String;

    async fn load(state: &Arc<AppState>, user: &String) -> Result<Option<Self>, BoxError> {
        Ok(state.store.account(user))
    }
}
