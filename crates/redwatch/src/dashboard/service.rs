//! The axum routes: the page at the dashboard's path and its data at `{path}/data`, both
//! behind the metrics' bearer token when one is set.

use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::{Dashboard, DataQuery};

/// The page: markup, style and script in one file, embedded in the binary.
const PAGE: &str = include_str!("page.html");
/// Replaced in [`PAGE`] by the data endpoint's path, as a JSON string.
const DATA_URL_PLACEHOLDER: &str = "\"__REDWATCH_DATA_URL__\"";

impl Dashboard {
    /// An axum router serving the page on [`Dashboard::path`] and its data on
    /// `{path}/data`, to `merge` into an application. When the metrics have a bearer token,
    /// both answer 401 without it, as `/metrics` does; a browser then needs something that
    /// adds the `Authorization` header, such as a reverse proxy.
    ///
    /// The data is computed on Tokio's blocking pool, never on the workers serving requests.
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let page = Bytes::from(page(self.path()));
        let for_page = self.clone();
        let for_data = self.clone();
        axum::Router::new()
            .route(
                self.path(),
                get(move |headers: HeaderMap| {
                    let (dashboard, page) = (for_page.clone(), page.clone());
                    async move {
                        if let Some(refused) = dashboard.inner.metrics.refuse_unauthorized(&headers)
                        {
                            return refused.map(Body::new);
                        }
                        respond(page, "text/html; charset=utf-8")
                    }
                }),
            )
            .route(
                &format!("{}/data", self.path()),
                get(
                    move |headers: HeaderMap, query: Result<Query<DataQuery>, QueryRejection>| {
                        let dashboard = for_data.clone();
                        async move {
                            // The token first: without it, not even the query is looked at.
                            if let Some(refused) =
                                dashboard.inner.metrics.refuse_unauthorized(&headers)
                            {
                                return refused.map(Body::new);
                            }
                            let query = match query {
                                Ok(Query(query)) => query,
                                Err(rejection) => return rejection.into_response(),
                            };
                            let computed = tokio::task::spawn_blocking(move || {
                                serde_json::to_vec(&dashboard.data(&query))
                            })
                            .await;
                            match computed {
                                Ok(Ok(json)) => respond(Bytes::from(json), "application/json"),
                                _ => {
                                    let mut response = Response::new(Body::from(
                                        "computing the dashboard failed\n",
                                    ));
                                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                                    response
                                }
                            }
                        }
                    },
                ),
            )
    }
}

fn respond(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The page with the data endpoint's path written in.
fn page(path: &str) -> String {
    let data_url = serde_json::to_string(&format!("{path}/data"))
        .unwrap_or_else(|_| "\"data\"".to_owned())
        // Inside a <script>, so that no path can close it.
        .replace('<', "\\u003c");
    PAGE.replace(DATA_URL_PLACEHOLDER, &data_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_reads_its_data_from_the_configured_path() {
        let html = page("/ops/dash<board");
        assert!(html.contains("\"/ops/dash\\u003cboard/data\""));
        assert!(!html.contains(DATA_URL_PLACEHOLDER));
        assert!(!html.contains("<script src"), "no external script");
        assert!(!html.contains("https://"), "no external asset");
    }
}
