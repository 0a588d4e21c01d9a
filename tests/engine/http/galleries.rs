//! The gallery API in process: every cell of the permission table (each role tries each
//! action; allowed ones succeed, the others get 403; non-members get 404, no credentials
//! 401), ownership transfer, login and logout. Live streams, media indexing and what the
//! mount sees are in `tests/it/galleries.rs`.

use super::{Reply, Served};
use base64ct::{Base64, Encoding};
use nanofs::gallery::admin::admin;
use nanofs::gallery::Role;
use nanofs::volume::Kind;
use nanofs::Ino;
use serde_json::json;

pub const USERS: [(&str, &str); 5] = [
    ("alice", "alice-password"),
    ("bob", "bob-password1"),
    ("carol", "carol-password"),
    ("dave", "dave-password1"),
    ("erin", "erin-password1"),
];

/// A sidecar with five users and one gallery, /trip, owned by alice, in which bob is
/// viewer, carol contributor and dave moderator; erin is no member.
pub struct World {
    pub s: Served,
    pub gallery: String,
}

impl World {
    pub fn new(toml: &str) -> Self {
        let s = Served::new(toml);
        for (name, pass) in USERS {
            s.galleries.user_add(name, pass).unwrap();
        }
        s.vol.create(Ino::ROOT, b"trip", Kind::Dir, 0o755, 0, 0, 0).unwrap();
        let g = s.galleries.gallery_create("/trip", "Trip", "alice").unwrap();
        for (user, role) in [("bob", Role::Viewer), ("carol", Role::Contributor), ("dave", Role::Moderator)] {
            s.galleries.gallery_set_member(&g.id, &admin(), user, Some(role)).unwrap();
        }
        Self { s, gallery: g.id }
    }

    /// `METHOD path` with an optional bearer token and JSON body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<serde_json::Value>) -> Reply {
        self.s.call(method, path, token, body)
    }

    /// A session token of `user`, logged in with their password.
    pub fn login(&self, user: &str) -> String {
        let pass = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
        let r = self.call("POST", "/api/login", None, Some(json!({ "user": user, "password": pass })));
        assert_eq!(r.status, 200, "login {user}: {}", String::from_utf8_lossy(&r.body));
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// A path of the gallery's API.
    pub fn g(&self, rest: &str) -> String {
        format!("/api/galleries/{}{rest}", self.gallery)
    }

    /// Uploads `data` as `name` into the gallery with tus (creation with the whole body);
    /// returns the status and the item id once it appears.
    pub fn upload(&self, token: &str, name: &str, data: &[u8]) -> (u16, Option<String>) {
        let status = self.upload_into(token, None, name, data);
        if status != 201 {
            return (status, None);
        }
        (status, self.item_id(token, name))
    }

    /// Uploads into a folder of the gallery (`None`: its own); returns the status.
    pub fn upload_into(&self, token: &str, folder: Option<&str>, name: &str, data: &[u8]) -> u16 {
        let mut meta = format!(
            "gallery {},filename {}",
            Base64::encode_string(self.gallery.as_bytes()),
            Base64::encode_string(name.as_bytes())
        );
        if let Some(f) = folder {
            meta.push_str(&format!(",folder {}", Base64::encode_string(f.as_bytes())));
        }
        let len = data.len().to_string();
        let headers = [
            ("tus-resumable", "1.0.0"),
            ("upload-length", len.as_str()),
            ("upload-metadata", meta.as_str()),
            ("content-type", "application/offset+octet-stream"),
        ];
        self.s.send("POST", "/uploads", Some(token), &headers, data.to_vec()).status
    }

    /// The id of the item named `name` in the gallery's top folder.
    pub fn item_id(&self, token: &str, name: &str) -> Option<String> {
        let list = self.call("GET", &self.g("/items?limit=1000"), Some(token), None).json();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["id"].as_str().unwrap().to_string())
    }
}

#[test]
fn every_cell_of_the_permission_table() {
    let w = World::new("");
    let t: std::collections::HashMap<&str, String> =
        ["alice", "bob", "carol", "dave", "erin"].into_iter().map(|u| (u, w.login(u))).collect();
    let (owner_item_status, owner_item) = w.upload(&t["alice"], "owners.jpg", b"owner's bytes");
    assert_eq!(owner_item_status, 201);
    let owner_item = owner_item.expect("the owner's upload is listed");
    let owner_comment = w
        .call(
            "POST",
            &w.g(&format!("/items/{owner_item}/comments")),
            Some(&t["alice"]),
            Some(json!({"text": "by alice"})),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // (user, role) pairs, least first; each row of the table is checked for every role.
    let roles = [("bob", "viewer"), ("carol", "contributor"), ("dave", "moderator"), ("alice", "owner")];
    let rank = |role: &str| ["viewer", "contributor", "moderator", "owner"].iter().position(|r| *r == role).unwrap();
    for (user, role) in roles {
        let tok = &t[user];
        let r = rank(role);
        let expect = |allowed: bool, status: u16, ok: u16, what: &str| {
            if allowed {
                assert_eq!(status, ok, "{role} should be allowed to {what}");
            } else {
                assert_eq!(status, 403, "{role} must be refused to {what}");
            }
        };
        // Read, comment, react, edit own comment: everyone.
        assert_eq!(w.call("GET", &w.g("/items"), Some(tok), None).status, 200, "{role} lists");
        let c = w.call(
            "POST",
            &w.g(&format!("/items/{owner_item}/comments")),
            Some(tok),
            Some(json!({"text": format!("hi from {user}")})),
        );
        assert_eq!(c.status, 201, "{role} comments");
        let cid = c.json()["id"].as_str().unwrap().to_string();
        let react =
            w.call("POST", &w.g(&format!("/items/{owner_item}/reactions")), Some(tok), Some(json!({"emoji": "🔥"})));
        assert_eq!(react.status, 200, "{role} reacts");
        assert_eq!(react.json()["on"], true);
        let edit = w.call(
            "PATCH",
            &w.g(&format!("/items/{owner_item}/comments/{cid}")),
            Some(tok),
            Some(json!({"text": "edited"})),
        );
        assert_eq!(edit.status, 200, "{role} edits own comment");
        // Nobody edits someone else's comment text.
        if user != "alice" {
            let other = w.call(
                "PATCH",
                &w.g(&format!("/items/{owner_item}/comments/{owner_comment}")),
                Some(tok),
                Some(json!({"text": "x"})),
            );
            assert_eq!(other.status, 403, "{role} must not edit alice's comment");
        }
        // Upload: contributor and up.
        let (status, own_item) = w.upload(tok, &format!("{user}.jpg"), user.as_bytes());
        expect(r >= 1, status, 201, "upload");
        // Annotate: contributor and up.
        let a = w.call(
            "POST",
            &w.g(&format!("/items/{owner_item}/annotations")),
            Some(tok),
            Some(json!({"text": "look", "region": {"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2}})),
        );
        expect(r >= 1, a.status, 201, "annotate");
        // Rename own item: contributor and up (a viewer has none; renaming the owner's is refused below).
        if let Some(own) = own_item {
            let rn = w.call(
                "PATCH",
                &w.g(&format!("/items/{own}")),
                Some(tok),
                Some(json!({"name": format!("{user}-renamed.jpg")})),
            );
            expect(true, rn.status, 200, "rename own item");
            let del = w.call("DELETE", &w.g(&format!("/items/{own}")), Some(tok), None);
            expect(true, del.status, 204, "delete own item");
        }
        // Rename anyone's item: moderator and up.
        let rn = w.call(
            "PATCH",
            &w.g(&format!("/items/{owner_item}")),
            Some(tok),
            Some(json!({"name": format!("by-{user}.jpg")})),
        );
        expect(r >= 2, rn.status, 200, "rename anyone's item");
        // Delete anyone's comment: moderator and up.
        let victim = w
            .call(
                "POST",
                &w.g(&format!("/items/{owner_item}/comments")),
                Some(&t["alice"]),
                Some(json!({"text": "victim"})),
            )
            .json()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let del = w.call("DELETE", &w.g(&format!("/items/{owner_item}/comments/{victim}")), Some(tok), None);
        expect(r >= 2 || user == "alice", del.status, 204, "delete anyone's comment");
        // Manage members and links: moderator and up.
        let mm = w.call("PUT", &w.g("/members/erin"), Some(tok), Some(json!({"role": "viewer"})));
        expect(r >= 2, mm.status, 200, "manage members");
        if mm.status == 200 {
            assert_eq!(w.call("DELETE", &w.g("/members/erin"), Some(tok), None).status, 200);
        }
        let ml = w.call("POST", &w.g("/links"), Some(tok), Some(json!({"role": "viewer", "expires_in_secs": 600})));
        expect(r >= 2, ml.status, 201, "create share links");
        expect(r >= 2, w.call("GET", &w.g("/members"), Some(tok), None).status, 200, "list members");
        // Administer (title): owner only.
        let at = w.call("PATCH", &w.g(""), Some(tok), Some(json!({"title": format!("Trip by {user}")})));
        expect(r >= 3, at.status, 200, "edit the title");
    }
    // A moderator cannot make anyone owner or change the owner's role.
    let d = &t["dave"];
    assert_eq!(w.call("PUT", &w.g("/members/erin"), Some(d), Some(json!({"role": "owner"}))).status, 422);
    assert_eq!(w.call("PUT", &w.g("/members/alice"), Some(d), Some(json!({"role": "viewer"}))).status, 403);
    assert_eq!(w.call("POST", &w.g("/owner"), Some(d), Some(json!({"user": "dave"}))).status, 403);
    // A non-member sees nothing; no credentials is 401; a bad token is 401.
    assert_eq!(w.call("GET", &w.g("/items"), Some(&t["erin"]), None).status, 404);
    assert_eq!(w.call("GET", &w.g("/items"), None, None).status, 401);
    assert_eq!(w.call("GET", &w.g("/items"), Some("nss_0123456789abcdef_00"), None).status, 401);
    // The owner transfers ownership: alice becomes moderator.
    let tr = w.call("POST", &w.g("/owner"), Some(&t["alice"]), Some(json!({"user": "carol"})));
    assert_eq!(tr.status, 200);
    assert_eq!(tr.json()["members"]["alice"], "moderator");
    assert_eq!(w.call("PATCH", &w.g(""), Some(&t["alice"]), Some(json!({"title": "x"}))).status, 403);
    assert_eq!(w.call("PATCH", &w.g(""), Some(&t["carol"]), Some(json!({"title": "Carol's"}))).status, 200);
    // A wrong password is refused; logout ends the session.
    let bad = w.call("POST", "/api/login", None, Some(json!({"user": "bob", "password": "nope-nope"})));
    assert_eq!(bad.status, 401);
    assert_eq!(w.call("POST", "/api/logout", Some(&t["bob"]), None).status, 204);
    assert_eq!(w.call("GET", &w.g("/items"), Some(&t["bob"]), None).status, 401);
}
