//! The Redis data model's names: keys and channels, and the values stored
//! in them (`<role>:<session>:<uid>` members, `<node>/<session>` holders). The
//! layout itself is described with the Lua scripts (`scripts`) and in
//! docs/CLUSTER.md.

use crate::core::{Role, SessionId, Uid};

/// Names of keys and channels.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    pub(super) fn uid(&self, uid: &Uid) -> String {
        format!("{}:uid:{}", self.prefix, uid.as_str())
    }
    pub(super) fn sessions(&self, node: &str) -> String {
        format!("{}:node:{node}:sessions", self.prefix)
    }
    pub(super) fn alive(&self, node: &str) -> String {
        format!("{}:node:{node}:alive", self.prefix)
    }
    pub(super) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    pub(super) fn channel(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
}

/// `<role>:<session>:<uid>`, a member of a node's sessions set.
pub(super) fn member(uid: &Uid, role: Role, session: SessionId) -> String {
    format!("{}:{session}:{}", role.as_str(), uid.as_str())
}

/// A sessions-set member back into (role, session, uid).
pub(super) fn parse_member(member: &str) -> Option<(Role, SessionId, Uid)> {
    let (role, rest) = member.split_once(':')?;
    let (session, uid) = rest.split_once(':')?;
    Some((
        parse_role(role)?,
        SessionId::parse(session)?,
        Uid::new(uid).ok()?,
    ))
}

pub(super) fn parse_role(text: &str) -> Option<Role> {
    text.parse().ok()
}

/// A registry entry: `<node>/<session>`.
pub(super) fn split_holder(value: &str) -> Option<(&str, SessionId)> {
    let (node, session) = value.split_once('/')?;
    Some((node, SessionId::parse(session)?))
}
