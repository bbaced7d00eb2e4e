//! Who a connection proved to be (from an authentication token), and what
//! that allows it to register as.

use super::command::{Role, Uid};
use super::error::{ErrorCode, Rejection};

/// An authenticated caller: the token's subject, and the role it is
/// restricted to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the only uid this connection may register as.
    pub subject: String,
    /// The token's `role` claim, when it restricts the role.
    pub role: Option<Role>,
}

impl Identity {
    /// Whether this identity may hold (uid, role); `FORBIDDEN` if not.
    pub fn permits(&self, uid: &Uid, role: Role) -> Result<(), Rejection> {
        if uid.as_str() != self.subject {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "the uid must be the authentication token's subject",
            ));
        }
        match self.role {
            Some(allowed) if allowed != role => Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("the authentication token only allows the {allowed} role"),
            )),
            _ => Ok(()),
        }
    }
}
