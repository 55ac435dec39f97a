//! The waiting room's routes: joining (a script call) and a place's status
//! (from a snapshot of the room this process keeps, refreshed by one
//! request at most every [`REFRESH`]; the others read it without Redis).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::{input, AppState, Buyer};
use crate::model::queue::{PlaceState, QueueId, QueueSnapshot};
use crate::model::valid_event_id;
use crate::store::queue::{JoinOutcome, MAX_LISTED};
use crate::time::rfc3339_ms;

/// How old a room's snapshot may be before a status request refreshes it.
pub const REFRESH: Duration = Duration::from_millis(200);

/// The rooms' snapshots of this process (shared by its serving threads).
#[derive(Default)]
pub struct QueueCache {
    rooms: RwLock<HashMap<String, (Arc<QueueSnapshot>, Instant)>>,
    refreshing: Mutex<HashSet<String>>,
}

impl QueueCache {
    fn get(&self, event: &str) -> Option<(Arc<QueueSnapshot>, Instant)> {
        self.rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event)
            .cloned()
    }

    fn put(&self, event: &str, snap: QueueSnapshot) -> (Arc<QueueSnapshot>, Instant) {
        let entry = (Arc::new(snap), Instant::now());
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        // Rooms not asked about for a while go (events come and go).
        if rooms.len() >= 1024 {
            rooms.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(60));
        }
        rooms.insert(event.to_string(), entry.clone());
        entry
    }

    /// Drops a room's snapshot (its event's settings changed).
    pub fn forget(&self, event: &str) {
        self.rooms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(event);
    }
}

/// The JSON of a place.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlaceBody<'a> {
    queue_id: String,
    event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admitted_until: Option<String>,
}

fn place_body<'a>(
    id: &QueueId,
    user: Option<&'a str>,
    event: &'a str,
    state: PlaceState,
) -> PlaceBody<'a> {
    PlaceBody {
        queue_id: id.to_string(),
        event_id: event,
        user_id: user,
        state: state.as_str(),
        position: match state {
            PlaceState::Waiting(p) => Some(p),
            _ => None,
        },
        admitted_until: match state {
            PlaceState::Admitted(until) => Some(rfc3339_ms(until)),
            _ => None,
        },
    }
}

fn queue_disabled() -> ApiError {
    ApiError::Conflict {
        code: "queue_disabled",
        message: "this event has no waiting room: hold tickets directly".into(),
        extra: None,
    }
}

/// `POST /v1/events/{id}/queue` with `{"userId"}`: 201 with a new place,
/// 200 with the user's place.
pub async fn join(
    State(st): State<AppState>,
    buyer: Option<Extension<Buyer>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let event = match p {
        Ok(Path(id)) if valid_event_id(&id) => id,
        _ => return Err(ApiError::NotFound("no such event".into())),
    };
    let body = input::json_body(&headers, body, buyer.is_some())?;
    let user = st.user_of(buyer.as_deref(), &body)?;
    match st.store.queue_join(&event, &user).await? {
        JoinOutcome::NoEvent => Err(ApiError::NotFound("no such event".into())),
        JoinOutcome::Disabled => Err(queue_disabled()),
        JoinOutcome::Joined {
            id,
            created,
            mut snapshot,
            admitted_until,
        } => {
            if let Some(until) = admitted_until {
                snapshot.admitted.insert(id.j, until);
            }
            let state = snapshot
                .state(id.j, snapshot.now_ms)
                .ok_or(ApiError::Internal)?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(place_body(&id, Some(&user), &event, state))).into_response())
        }
    }
}

/// The room's snapshot: this process's, refreshed when older than
/// [`REFRESH`] (by one request; the others meanwhile read the older one),
/// or at once when `fresh` (a place newer than the snapshot). `None`: no
/// such event, or no room.
async fn snapshot(
    st: &AppState,
    event: &str,
    fresh: bool,
) -> ApiResult<Option<(Arc<QueueSnapshot>, Instant)>> {
    let cache = &st.queues;
    let had = cache.get(event);
    if let Some((_, at)) = &had {
        if !fresh && at.elapsed() < REFRESH {
            return Ok(had);
        }
        let mine = cache
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event.to_string());
        if !mine && !fresh {
            return Ok(had);
        }
    }
    let got = st.store.queue_tick(event, MAX_LISTED).await;
    cache
        .refreshing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(event);
    match got {
        // Shed under overload: the last snapshot still answers.
        Err(crate::store::StoreError::Overloaded) if had.is_some() => Ok(had),
        Err(e) => Err(e.into()),
        Ok(Some(snap)) => Ok(Some(cache.put(event, snap))),
        Ok(None) => {
            cache.forget(event);
            Ok(None)
        }
    }
}

/// `GET /v1/queue/{queueId}`: where the place stands.
pub async fn status(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound("no such place in a waiting room".into());
    let id = p
        .ok()
        .and_then(|Path(s)| QueueId::parse(&s))
        .ok_or_else(not_found)?;
    let (mut snap, mut at) = snapshot(&st, &id.event, false)
        .await?
        .ok_or_else(not_found)?;
    if id.j > snap.n && at.elapsed() > Duration::from_millis(20) {
        // Joined after this snapshot was taken.
        (snap, at) = snapshot(&st, &id.event, true)
            .await?
            .ok_or_else(not_found)?;
    }
    if !id.verifies(&snap.key) {
        return Err(not_found());
    }
    let now = snap.now_ms + at.elapsed().as_millis() as u64;
    let state = snap.state(id.j, now).ok_or_else(not_found)?;
    Ok(Json(place_body(&id, None, &id.event, state)).into_response())
}
