//! HTTP clients that send an API key with every request, for both test
//! binaries.

/// A client builder whose requests all carry `Authorization: Bearer <key>`.
pub fn client_builder(key: &str) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder().default_headers(headers)
}
