//! The gallery API (docs/galleries.md): sessions, galleries, items, comments, annotations,
//! reactions, members and share links. Every handler resolves the caller's role in the
//! gallery and leaves the permission decision to the engine, which enforces the table.

use super::auth::{caller, credential_of, Caller, DEVICE_COOKIE, SESSION_COOKIE};
use super::error::{ApiError, ApiResult};
use super::observe::Client;
use super::Sidecar;
use crate::gallery::collab::Target;
use crate::gallery::items::{ListQuery, SortKey};
use crate::gallery::users::Principal;
use crate::gallery::{Action, Actor, Gallery, Role};
use crate::ids::Ino;
use crate::volume::AuditEvent;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type S = State<Arc<Sidecar>>;

/// A gallery request's context: who, where, with which role.
pub(super) struct Ctx {
    pub gallery: Gallery,
    pub actor: Actor,
    pub path: String,
    /// Who acts, for the audit trail (`Caller::who`).
    pub who: String,
}

/// Resolves the caller and their role in gallery `id`; a gallery they have no role in is
/// reported as missing, so ids cannot be probed.
pub(super) async fn ctx(state: &Sidecar, headers: &HeaderMap, id: &str) -> ApiResult<Ctx> {
    let caller = caller(state, headers).await?;
    ctx_of(state, caller, id).await
}

pub(super) async fn ctx_of(state: &Sidecar, caller: Caller, id: &str) -> ApiResult<Ctx> {
    let id = id.to_string();
    let (gallery, path) = state
        .gallery(move |gs| {
            let g = gs.gallery(&id)?;
            let path = gs.volume().dir_path(g.dir())?;
            Ok((g, path))
        })
        .await?;
    let actor =
        caller.actor_in(&gallery, &path).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such gallery"))?;
    Ok(Ctx { gallery, actor, path, who: caller.who() })
}

fn item_ino(item: &str) -> ApiResult<Ino> {
    item.parse::<u64>().map(Ino).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such item"))
}

fn session_cookie(token: &str, expires: i64, secure: bool) -> HeaderValue {
    let max_age = (expires - crate::gallery::now()).max(0);
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("token is ASCII")
}

#[derive(Deserialize)]
pub struct Login {
    user: String,
    password: String,
}

/// `POST /api/login`.
pub async fn login(State(state): S, client: Client, Json(body): Json<Login>) -> ApiResult<Response> {
    let user = body.user.clone();
    let login = state.gallery(move |gs| gs.login(&body.user, &body.password));
    let result = state.password_try(&user, client, login).await;
    state.audit_password_try(client, &result, || AuditEvent::new("login", &user, "")).await;
    let (token, expires) = result?;
    let mut r = Json(json!({ "token": token, "user": user, "expires": crate::utc::rfc3339(expires) })).into_response();
    r.headers_mut().insert(header::SET_COOKIE, session_cookie(&token, expires, state.config.tls));
    Ok(r)
}

/// `POST /api/logout`.
pub async fn logout(State(state): S, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = credential_of(&headers) {
        state.gallery(move |gs| gs.logout(&token)).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, state.config.tls));
    Ok(r)
}

/// `GET /api/me`.
pub async fn me(State(state): S, headers: HeaderMap) -> ApiResult<Json<Value>> {
    Ok(Json(match caller(&state, &headers).await? {
        Caller::Principal(Principal::User(u)) => json!({ "user": u }),
        Caller::Principal(Principal::Link { id, gallery, role, expires }) => json!({
            "user": null,
            "link": { "id": id, "gallery": gallery, "role": role, "expires": crate::utc::rfc3339(expires) },
        }),
        Caller::Principal(Principal::Admin) | Caller::Scoped(_) => json!({ "user": null, "token": true }),
    }))
}

#[derive(Deserialize)]
pub struct OpenLink {
    token: String,
    password: Option<String>,
}

/// `POST /api/share/open`: a session bound to a share link.
pub async fn open_link(State(state): S, client: Client, Json(body): Json<OpenLink>) -> ApiResult<Response> {
    // Tries of a link's password are throttled by the link (its id, never its secret).
    let link_id = body.token.split('_').nth(1).unwrap_or_default().to_string();
    let link = format!("link:{link_id}");
    // A link bound to networks or countries does not open elsewhere, nor one bound to a
    // device in another browser.
    let lookup = link_id.clone();
    let bindings = state.gallery(move |gs| gs.link_bindings(&lookup)).await?;
    if let Some(b) = &bindings {
        super::auth::check_place(&state, b, "share link").await?;
        if b.device {
            super::auth::check_link_device(&state, &link_id).await?;
        }
    }
    let open = state.gallery(move |gs| gs.link_open(&body.token, body.password.as_deref()));
    let result = state.password_try(&link, client, open).await;
    let gallery_of = |r: &ApiResult<(String, i64, Principal)>| match r {
        Ok((_, _, Principal::Link { gallery, .. })) => gallery.clone(),
        _ => String::new(),
    };
    state.audit_password_try(client, &result, || AuditEvent::new("share.open", &link, gallery_of(&result))).await;
    let (token, expires, principal) = result?;
    let Principal::Link { id, gallery, role, .. } = principal else { unreachable!("a link opens a link session") };
    // The first browser to open a link bound to a device becomes that device: it keeps a
    // random secret in a cookie of its own, which every later request of the link shows.
    let mut device_cookie = None;
    if bindings.is_some_and(|b| b.device) {
        let secret = super::observe::current_request().device_cookie.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            crate::crypto::keys::random_bytes(&mut s);
            crate::ids::hex(&s)
        });
        let (link, mine) = (id.clone(), secret.clone());
        if !state.gallery(move |gs| gs.link_bind_device(&link, &mine)).await? {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the share link is bound to another device (the browser that first opened it)",
            ));
        }
        device_cookie = Some(secret);
    }
    let mut r = Json(json!({
        "token": token, "gallery": gallery, "role": role, "link": id, "expires": crate::utc::rfc3339(expires),
    }))
    .into_response();
    r.headers_mut().append(header::SET_COOKIE, session_cookie(&token, expires, state.config.tls));
    if let Some(secret) = device_cookie {
        let secure = if state.config.tls { "; Secure" } else { "" };
        let value = format!("{DEVICE_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31622400{secure}");
        r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&value).expect("hex is ASCII"));
    }
    Ok(r)
}

/// `GET /api/galleries`: the galleries the caller has a role in.
pub async fn list(State(state): S, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let caller = caller(&state, &headers).await?;
    let out = state
        .gallery(move |gs| {
            let mut out = Vec::new();
            for g in gs.gallery_list()? {
                let path = gs.volume().dir_path(g.dir())?;
                if let Some(actor) = caller.actor_in(&g, &path) {
                    let mut v = gallery_json(&g, &path, &actor);
                    v["items"] = json!(gs.gallery_item_inos(&g)?.len());
                    out.push(v);
                }
            }
            Ok(out)
        })
        .await?;
    Ok(Json(json!({ "galleries": out })))
}

fn gallery_json(g: &Gallery, path: &str, actor: &Actor) -> Value {
    let mut v = json!({
        "id": g.id, "title": g.title, "owner": g.owner(), "created": crate::utc::rfc3339(g.created),
        "role": actor.role, "folder": g.ino.to_string(),
    });
    // Paths and members are for those who manage the gallery.
    if crate::gallery::allows(actor.role, Action::ManageMembers) {
        v["path"] = json!(path);
        v["members"] = json!(g.members);
    }
    v
}

#[derive(Deserialize)]
pub struct NewGallery {
    title: String,
    name: Option<String>,
    /// An existing directory to mark (administrators' tokens only), with its `owner`.
    path: Option<String>,
    owner: Option<String>,
}

/// `POST /api/galleries`: a user creates a new gallery directory under `galleries_root`,
/// which they own; an API token that may write and delete under `path` marks that
/// existing directory as a gallery of `owner`.
pub async fn create(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Json(body): Json<NewGallery>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers).await?;
    let g = match (&caller, body.path.clone()) {
        (Caller::Scoped(token), Some(path)) => {
            let path = crate::volume::normalise_prefix(&path).ok_or_else(|| ApiError::bad_request("bad path"))?;
            let may = token.covers(&path)
                && token.allow.contains(&crate::volume::Permission::Write)
                && token.allow.contains(&crate::volume::Permission::Delete);
            if !may {
                return Err(ApiError::new(StatusCode::FORBIDDEN, format!("the token may not administer {path}")));
            }
            let owner = body.owner.clone().ok_or_else(|| ApiError::bad_request("give the gallery's owner"))?;
            state.gallery(move |gs| gs.gallery_create(&path, &body.title, &owner)).await?
        }
        (_, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only an administrator's token can mark an existing directory",
            ))
        }
        (_, None) => {
            let user = caller
                .user()
                .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "only a logged-in user can create a gallery"))?
                .to_string();
            let name = body.name.clone().unwrap_or_else(|| slug(&body.title));
            state.gallery(move |gs| gs.gallery_create_dir(&name, &body.title, &user)).await?
        }
    };
    let c = ctx_of(&state, caller, &g.id).await?;
    state.audit(client, AuditEvent::new("gallery.create", &c.who, &g.id).detail(&c.path)).await;
    Ok((StatusCode::CREATED, Json(gallery_json(&c.gallery, &c.path, &c.actor))).into_response())
}

/// A directory name from a title: letters, digits and dashes.
fn slug(title: &str) -> String {
    let s: String =
        title.chars().map(|c| if c.is_alphanumeric() { c.to_lowercase().next().unwrap_or(c) } else { '-' }).collect();
    let s = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    let s: String = s.chars().take(80).collect();
    if s.is_empty() {
        format!("gallery-{}", crate::gallery::now())
    } else {
        s
    }
}

/// `GET /api/galleries/{id}`.
pub async fn show(State(state): S, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    Ok(Json(gallery_json(&c.gallery, &c.path, &c.actor)))
}

#[derive(Deserialize)]
pub struct Title {
    title: String,
}

/// `PATCH /api/galleries/{id}`.
pub async fn retitle(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<Title>,
) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let actor = c.actor.clone();
    let g = state.gallery(move |gs| gs.gallery_set_title(&id, &actor, &b.title)).await?;
    Ok(Json(gallery_json(&g, &c.path, &c.actor)))
}

/// `DELETE /api/galleries/{id}`: sharing ends; the directory stays.
pub async fn delete(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let c = ctx(&state, &headers, &id).await?;
    let event = AuditEvent::new("gallery.delete", &c.who, &id).detail(&c.path);
    state.gallery(move |gs| gs.gallery_delete(&id, &c.actor)).await?;
    state.audit(client, event).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ItemsQuery {
    folder: Option<String>,
    sort: Option<SortKey>,
    order: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/galleries/{id}/items`.
pub async fn items(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ItemsQuery>,
) -> ApiResult<Json<crate::gallery::items::Listing>> {
    let c = ctx(&state, &headers, &id).await?;
    let folder = q.folder.as_deref().map(item_ino).transpose()?;
    let descending = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(ApiError::bad_request(format!("order={o}: asc or desc"))),
    };
    let query = ListQuery {
        folder,
        sort: q.sort.unwrap_or(SortKey::Name),
        descending,
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(100),
    };
    let listing = state.gallery(move |gs| gs.gallery_items(&c.gallery, &c.actor, &query)).await?;
    Ok(Json(listing))
}

/// `GET /api/galleries/{id}/items/{item}`: the item with its discussion.
pub async fn item(
    State(state): S,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let ino = item_ino(&item)?;
    let v = state
        .gallery(move |gs| {
            let view = gs.gallery_item_view(&c.gallery, &c.actor, ino)?;
            let talk = gs.item_discussion(&c.gallery, &c.actor, ino)?;
            let mut v = serde_json::to_value(view).unwrap_or_default();
            v["discussion"] = serde_json::to_value(talk).unwrap_or_default();
            Ok(v)
        })
        .await?;
    Ok(Json(v))
}

/// `GET /api/galleries/{id}/items/{item}/content`: the bytes, with ranges.
pub async fn content(
    State(state): S,
    headers: HeaderMap,
    method: axum::http::Method,
    Path((id, item)): Path<(String, String)>,
) -> ApiResult<Response> {
    let c = ctx(&state, &headers, &id).await?;
    c.actor.require(Action::Read)?;
    let ino = item_ino(&item)?;
    let (attr, name) = state
        .gallery(move |gs| {
            gs.gallery_item(&c.gallery, ino)?;
            let (_, name) = gs.locate_item(&c.gallery, ino)?;
            Ok((gs.volume().getattr(ino)?, name))
        })
        .await?;
    super::files::serve_file(&state, &attr, &name, &headers, method == axum::http::Method::HEAD).await
}

#[derive(Deserialize)]
pub struct Rename {
    name: String,
}

/// `PATCH /api/galleries/{id}/items/{item}`: rename in its folder.
pub async fn rename(
    State(state): S,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
    Json(b): Json<Rename>,
) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let ino = item_ino(&item)?;
    if b.name.is_empty() || b.name.contains('/') || b.name.starts_with('.') || b.name.len() > crate::volume::NAME_MAX {
        return Err(ApiError::bad_request("a name is 1 to 255 bytes, without '/', not starting with '.'"));
    }
    let old = state.gallery(move |gs| gs.rename_item(&c.gallery, &c.actor, ino, &b.name)).await?;
    Ok(Json(json!({ "id": item, "renamed_from": old })))
}

/// `DELETE /api/galleries/{id}/items/{item}`.
pub async fn delete_item(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let c = ctx(&state, &headers, &id).await?;
    let ino = item_ino(&item)?;
    let event = AuditEvent::new("delete", &c.who, format!("{}#{item}", c.path)).detail(format!("gallery {id}"));
    state.gallery(move |gs| gs.delete_item(&c.gallery, &c.actor, ino)).await?;
    state.audit(client, event).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct NewComment {
    text: String,
    parent: Option<String>,
}

/// `POST /api/galleries/{id}/items/{item}/comments`.
pub async fn comment(
    State(state): S,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
    Json(b): Json<NewComment>,
) -> ApiResult<Response> {
    let c = ctx(&state, &headers, &id).await?;
    let ino = item_ino(&item)?;
    let made = state.gallery(move |gs| gs.comment_add(&c.gallery, &c.actor, ino, &b.text, b.parent.as_deref())).await?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

#[derive(Deserialize)]
pub struct EditText {
    text: String,
}

/// `PATCH /api/galleries/{id}/items/{item}/comments/{c}`.
pub async fn comment_edit(
    State(state): S,
    headers: HeaderMap,
    Path((id, item, cid)): Path<(String, String, String)>,
    Json(b): Json<EditText>,
) -> ApiResult<Json<crate::gallery::collab::Comment>> {
    let c = ctx(&state, &headers, &id).await?;
    Ok(Json(state.gallery(move |gs| gs.comment_edit(&c.gallery, &c.actor, &item, &cid, &b.text)).await?))
}

/// `DELETE /api/galleries/{id}/items/{item}/comments/{c}`.
pub async fn comment_delete(
    State(state): S,
    headers: HeaderMap,
    Path((id, item, cid)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let c = ctx(&state, &headers, &id).await?;
    state.gallery(move |gs| gs.comment_delete(&c.gallery, &c.actor, &item, &cid)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct NewAnnotation {
    text: String,
    region: Option<Region>,
    time: Option<TimeRange>,
}

#[derive(Deserialize)]
pub struct Region {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

#[derive(Deserialize)]
pub struct TimeRange {
    start: f64,
    end: f64,
}

fn target_of(region: Option<Region>, time: Option<TimeRange>) -> ApiResult<Option<Target>> {
    match (region, time) {
        (Some(r), None) => Ok(Some(Target::Region { x: r.x, y: r.y, w: r.w, h: r.h })),
        (None, Some(t)) => Ok(Some(Target::Time { start: t.start, end: t.end })),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::bad_request("an annotation has a region or a time range, not both")),
    }
}

/// `POST /api/galleries/{id}/items/{item}/annotations`.
pub async fn annotate(
    State(state): S,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
    Json(b): Json<NewAnnotation>,
) -> ApiResult<Response> {
    let c = ctx(&state, &headers, &id).await?;
    let ino = item_ino(&item)?;
    let target = target_of(b.region, b.time)?.ok_or_else(|| ApiError::bad_request("give a region or a time range"))?;
    let made = state.gallery(move |gs| gs.annotation_add(&c.gallery, &c.actor, ino, target, &b.text)).await?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

#[derive(Deserialize)]
pub struct EditAnnotation {
    text: Option<String>,
    region: Option<Region>,
    time: Option<TimeRange>,
}

/// `PATCH /api/galleries/{id}/items/{item}/annotations/{a}`.
pub async fn annotation_edit(
    State(state): S,
    headers: HeaderMap,
    Path((id, item, aid)): Path<(String, String, String)>,
    Json(b): Json<EditAnnotation>,
) -> ApiResult<Json<crate::gallery::collab::Annotation>> {
    let c = ctx(&state, &headers, &id).await?;
    let target = target_of(b.region, b.time)?;
    Ok(Json(
        state
            .gallery(move |gs| gs.annotation_edit(&c.gallery, &c.actor, &item, &aid, b.text.as_deref(), target))
            .await?,
    ))
}

/// `DELETE /api/galleries/{id}/items/{item}/annotations/{a}`.
pub async fn annotation_delete(
    State(state): S,
    headers: HeaderMap,
    Path((id, item, aid)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let c = ctx(&state, &headers, &id).await?;
    state.gallery(move |gs| gs.annotation_delete(&c.gallery, &c.actor, &item, &aid)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct React {
    emoji: String,
}

/// `POST /api/galleries/{id}/items/{item}/reactions`: toggles.
pub async fn react(
    State(state): S,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
    Json(b): Json<React>,
) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let ino = item_ino(&item)?;
    let emoji = b.emoji.clone();
    let (on, count) = state.gallery(move |gs| gs.reaction_toggle(&c.gallery, &c.actor, ino, &b.emoji)).await?;
    Ok(Json(json!({ "emoji": emoji, "on": on, "count": count })))
}

/// `GET /api/galleries/{id}/members`.
pub async fn members(State(state): S, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    c.actor.require(Action::ManageMembers)?;
    Ok(Json(json!({ "members": c.gallery.members })))
}

#[derive(Deserialize)]
pub struct SetRole {
    role: Role,
}

/// `PUT /api/galleries/{id}/members/{user}`.
pub async fn set_member(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Path((id, user)): Path<(String, String)>,
    Json(b): Json<SetRole>,
) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let event = AuditEvent::new("role.set", &c.who, &id).detail(format!("{user}: {}", b.role.as_str())).about(&user);
    let g = state.gallery(move |gs| gs.gallery_set_member(&id, &c.actor, &user, Some(b.role))).await?;
    state.audit(client, event).await;
    Ok(Json(json!({ "members": g.members })))
}

/// `DELETE /api/galleries/{id}/members/{user}`.
pub async fn remove_member(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let event = AuditEvent::new("role.remove", &c.who, &id).detail(&user).about(&user);
    let g = state.gallery(move |gs| gs.gallery_set_member(&id, &c.actor, &user, None)).await?;
    state.audit(client, event).await;
    Ok(Json(json!({ "members": g.members })))
}

#[derive(Deserialize)]
pub struct NewOwner {
    user: String,
}

/// `POST /api/galleries/{id}/owner`.
pub async fn transfer(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<NewOwner>,
) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let event = AuditEvent::new("gallery.transfer", &c.who, &id).detail(&b.user).about(&b.user);
    let g = state.gallery(move |gs| gs.gallery_transfer(&id, &c.actor, &b.user)).await?;
    state.audit(client, event).await;
    Ok(Json(json!({ "owner": g.owner(), "members": g.members })))
}

/// `GET /api/galleries/{id}/links`.
pub async fn links(State(state): S, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = ctx(&state, &headers, &id).await?;
    let list = state.gallery(move |gs| gs.link_list(&c.gallery, &c.actor)).await?;
    Ok(Json(json!({ "links": list })))
}

#[derive(Deserialize)]
pub struct NewLink {
    role: Option<Role>,
    expires_in_secs: Option<i64>,
    password: Option<String>,
    /// Networks (or addresses) it works from.
    #[serde(default)]
    networks: Vec<String>,
    /// ISO country codes it works from.
    #[serde(default)]
    countries: Vec<String>,
    /// Bound to the first browser that opens it.
    #[serde(default)]
    device: bool,
}

/// `POST /api/galleries/{id}/links`.
pub async fn link_create(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<NewLink>,
) -> ApiResult<Response> {
    let c = ctx(&state, &headers, &id).await?;
    let role = b.role.unwrap_or(Role::Viewer);
    let ttl = b.expires_in_secs.unwrap_or(7 * 86_400);
    let password = b.password.filter(|p| !p.is_empty());
    let networks = b
        .networks
        .iter()
        .map(|n| {
            crate::volume::parse_network(n)
                .ok_or_else(|| ApiError::bad_request(format!("{n:?} is not a network (10.0.0.0/8) or an address")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let bindings = crate::volume::Bindings { networks, countries: b.countries, device: b.device };
    let (who, gallery) = (c.who.clone(), c.gallery.id.clone());
    let (info, token) = state
        .gallery(move |gs| gs.link_create(&c.gallery, &c.actor, role, ttl, password.as_deref(), &bindings))
        .await?;
    let detail = format!("link {}: {}, {ttl} s", info.id, role.as_str());
    state.audit(client, AuditEvent::new("share.create", who, gallery).detail(detail)).await;
    let url = format!("/s/{token}");
    Ok((StatusCode::CREATED, Json(json!({ "link": info, "token": token, "url": url }))).into_response())
}

/// `DELETE /api/galleries/{id}/links/{link}`.
pub async fn link_revoke(
    State(state): S,
    client: Client,
    headers: HeaderMap,
    Path((id, link)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let c = ctx(&state, &headers, &id).await?;
    let event = AuditEvent::new("share.revoke", &c.who, &id).detail(format!("link {link}"));
    state.gallery(move |gs| gs.link_revoke(&c.gallery, &c.actor, &link)).await?;
    state.audit(client, event).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes expired sessions, the records of items a crash left behind and the renders of
/// deleted or changed pictures, at start and then hourly.
pub async fn housekeeping(state: Arc<Sidecar>) {
    if state.vol.is_read_only() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match state.gallery(|gs| Ok((gs.session_sweep()?, gs.sweep()?))).await {
            Ok((0, 0)) => {}
            Ok((sessions, items)) => tracing::info!(sessions, items, "expired sessions and stale item records deleted"),
            Err(e) => tracing::warn!(error = %e.message, "gallery housekeeping failed"),
        }
        let vol = state.vol.clone();
        match tokio::task::spawn_blocking(move || vol.foreign(|| crate::stream::render::sweep(&vol))).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(entries = n, "renders of deleted or changed pictures removed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "removing renders of deleted pictures failed"),
            Err(e) => tracing::warn!(error = %e, "removing renders of deleted pictures failed"),
        }
    }
}
