//! Roles in a gallery and the one table of what each may do (docs/galleries.md).

use serde::{Deserialize, Serialize};

/// A member's role, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads, comments and reacts.
    Viewer,
    /// Also uploads, annotates, renames and deletes own items.
    Contributor,
    /// Also deletes anyone's items and comments, manages members below owner and links.
    Moderator,
    /// Everything, including the title, ownership and deleting the gallery.
    Owner,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Contributor, Role::Moderator, Role::Owner];

    /// The name used in the API and the CLI.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Contributor => "contributor",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (viewer, contributor, moderator, owner)"))
    }
}

/// Something a principal may want to do in a gallery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// List items, download, thumbnails, events.
    Read,
    /// Comment or reply.
    Comment,
    /// Toggle a reaction.
    React,
    /// Edit or delete one's own comment.
    EditOwnComment,
    /// Upload items.
    Upload,
    /// Add an annotation; edit or delete one's own.
    Annotate,
    /// Rename or delete an item one uploaded.
    ChangeOwnItem,
    /// Rename or delete any item.
    ChangeAnyItem,
    /// Delete anyone's comment or annotation.
    Moderate,
    /// List members; add, change and remove members below owner.
    ManageMembers,
    /// Create, list and revoke share links.
    ManageLinks,
    /// Edit the title, transfer ownership, delete the gallery.
    Administer,
}

impl Action {
    /// Every action, in the order of the table in docs/galleries.md.
    pub const ALL: [Action; 12] = [
        Action::Read,
        Action::Comment,
        Action::React,
        Action::EditOwnComment,
        Action::Upload,
        Action::Annotate,
        Action::ChangeOwnItem,
        Action::ChangeAnyItem,
        Action::Moderate,
        Action::ManageMembers,
        Action::ManageLinks,
        Action::Administer,
    ];

    /// The least role that may do this.
    #[must_use]
    pub fn least_role(self) -> Role {
        match self {
            Action::Read | Action::Comment | Action::React | Action::EditOwnComment => Role::Viewer,
            Action::Upload | Action::Annotate | Action::ChangeOwnItem => Role::Contributor,
            Action::ChangeAnyItem | Action::Moderate | Action::ManageMembers | Action::ManageLinks => Role::Moderator,
            Action::Administer => Role::Owner,
        }
    }

    /// Words for an error message: "a viewer may not {what}".
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Action::Read => "see this gallery",
            Action::Comment => "comment",
            Action::React => "react",
            Action::EditOwnComment => "edit comments",
            Action::Upload => "upload",
            Action::Annotate => "annotate",
            Action::ChangeOwnItem => "rename or delete items",
            Action::ChangeAnyItem => "rename or delete other people's items",
            Action::Moderate => "delete other people's comments or annotations",
            Action::ManageMembers => "manage members",
            Action::ManageLinks => "manage share links",
            Action::Administer => "administer the gallery",
        }
    }
}

/// Whether `role` may do `action`: the permission table.
#[must_use]
pub fn allows(role: Role, action: Action) -> bool {
    role >= action.least_role()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_each_adds_rights() {
        for pair in Role::ALL.windows(2) {
            let (lo, hi) = (pair[0], pair[1]);
            assert!(lo < hi);
            let lo_n = Action::ALL.iter().filter(|a| allows(lo, **a)).count();
            let hi_n = Action::ALL.iter().filter(|a| allows(hi, **a)).count();
            assert!(hi_n > lo_n, "{hi:?} must be able to do more than {lo:?}");
        }
        assert!(Action::ALL.iter().all(|a| allows(Role::Owner, *a)));
        assert!(!allows(Role::Viewer, Action::Upload));
        assert!(!allows(Role::Moderator, Action::Administer));
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
