//! The token request of the Docker registry token protocol, as docker/distribution's
//! client makes it: with an identity token (a refresh token from an OAuth2 login) a
//! `POST` of an OAuth2 `refresh_token` grant; otherwise a `GET` with the user name and
//! password as Basic auth (or none, anonymously).
//!
//! The realm comes from the registry's `WWW-Authenticate` challenge, so the registry
//! decides where kiln sends credentials: it must be `https://`, unless the registry itself
//! may be spoken to in plain HTTP (a loopback host or `--insecure-registry`).

use reqwest::{Client, RequestBuilder};

use crate::auth::Credentials;
use crate::error::{RegistryError, Result};

/// The OAuth2 `client_id` kiln names itself with (docker sends `docker`).
pub const CLIENT_ID: &str = "kiln";

/// Refuses a realm kiln must not send credentials (or trust tokens from) over plain HTTP.
pub fn check_realm(realm: &str, registry: &str, repository: &str, allow_http: bool) -> Result<()> {
    let scheme = realm.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Ok(()),
        Some("http") if allow_http => Ok(()),
        Some("http") => Err(RegistryError::Invalid {
            registry: registry.to_string(),
            repository: repository.to_string(),
            what: "token".into(),
            reason: format!("the registry sent the token realm {realm}, which is not https"),
            hint: format!(
                "credentials and tokens would travel in clear text; fix the registry's auth realm, or, if this registry and its network are trusted, pass --insecure-registry {registry}"
            ),
        }),
        _ => Err(RegistryError::Invalid {
            registry: registry.to_string(),
            repository: repository.to_string(),
            what: "token".into(),
            reason: format!("the token realm {realm:?} is not an https:// URL"),
            hint: "check the registry's auth configuration".into(),
        }),
    }
}

/// Builds the request for a token for `scope` (space-separated scopes; empty for a login
/// check) from `realm`.
pub fn request(
    http: &Client,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: Option<&Credentials>,
) -> RequestBuilder {
    let scopes = scope.split(' ').filter(|s| !s.is_empty());
    if let Some(refresh) = creds.and_then(Credentials::identity_token) {
        // OAuth2: scopes joined by spaces in one field (RFC 6749 §3.3), as distribution does.
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", CLIENT_ID),
        ];
        if let Some(s) = service {
            form.push(("service", s));
        }
        let joined = scopes.collect::<Vec<_>>().join(" ");
        if !joined.is_empty() {
            form.push(("scope", &joined));
        }
        return http.post(realm).form(&form);
    }
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = service {
        query.push(("service", s));
    }
    for s in scopes {
        query.push(("scope", s));
    }
    let rb = http.get(realm).query(&query);
    match creds {
        Some(c) => rb.basic_auth(&c.username, Some(&c.password)),
        None => rb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realms_must_be_https_unless_the_registry_is_insecure() {
        assert!(check_realm("https://auth.example/token", "reg.example", "a", false).is_ok());
        assert!(check_realm("HTTPS://auth.example/token", "reg.example", "a", false).is_ok());
        let e = check_realm("http://auth.example/token", "reg.example", "a", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not https") && e.contains("--insecure-registry reg.example"),
            "{e}"
        );
        assert!(check_realm("http://127.0.0.1:5001/token", "127.0.0.1:5000", "a", true).is_ok());
        assert!(check_realm("ftp://auth.example/token", "reg.example", "a", true).is_err());
        assert!(check_realm("auth.example/token", "reg.example", "a", true).is_err());
    }

    #[test]
    fn identity_tokens_post_a_refresh_grant() {
        let http = Client::new();
        let token = Credentials {
            username: "<token>".into(),
            password: "refresh-123".into(),
        };
        let req = request(
            &http,
            "https://auth.example/token",
            Some("reg"),
            "repository:a:pull repository:b:pull",
            Some(&token),
        )
        .build()
        .unwrap();
        assert_eq!(req.method(), reqwest::Method::POST);
        let body = String::from_utf8(req.body().unwrap().as_bytes().unwrap().to_vec()).unwrap();
        assert_eq!(
            body,
            "grant_type=refresh_token&refresh_token=refresh-123&client_id=kiln&service=reg&scope=repository%3Aa%3Apull+repository%3Ab%3Apull"
        );
        assert!(req.headers().get(reqwest::header::AUTHORIZATION).is_none());
        let basic = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let req = request(
            &http,
            "https://auth.example/token",
            Some("reg"),
            "repository:a:pull",
            Some(&basic),
        )
        .build()
        .unwrap();
        assert_eq!(req.method(), reqwest::Method::GET);
        assert_eq!(req.url().query(), Some("service=reg&scope=repository%3Aa%3Apull"));
        assert!(req.headers().get(reqwest::header::AUTHORIZATION).is_some());
    }
}
