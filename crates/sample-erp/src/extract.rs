//! Request extractors whose rejections use the ERP's JSON error shape.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies (and
//! `Json` with 415 or 422 for some cases); callers of this ERP are promised
//! `{"error":"BAD_REQUEST",...}` for every malformed request instead.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ErpError;

/// A JSON body; any problem with it is a 400 BAD_REQUEST.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ErpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ErpError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ErpError::BadRequest(rejection.body_text())),
        }
    }
}

/// A query string; any problem with it is a 400 BAD_REQUEST.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ErpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ErpError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ErpError::BadRequest(rejection.body_text())),
        }
    }
}

/// Path parameters; any problem with them is a 400 BAD_REQUEST.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ErpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ErpError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ErpError::BadRequest(rejection.body_text())),
        }
    }
}
