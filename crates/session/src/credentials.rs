//! Authentication between the two sides of a session, one direction at a time.
//!
//! Each side is both a [`Prover`] (it shows its own credentials, built with the nonce
//! the peer handed it) and a [`Verifier`] (it checks the peer's credentials against the
//! nonce it handed the peer, and hands out a fresh nonce once they were used, so that a
//! replayed credential no longer verifies).

use gwmo_proto::auth::{self, AuthType};
use gwmo_proto::{Chal, Cred, Header};

/// A name and secret, and the scheme they are shown with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub auth: AuthType,
    pub name: String,
    pub secret: String,
}

/// What checking the peer's credentials found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials match.
    Valid,
    /// No credentials at all (status 407).
    Missing,
    /// Credentials that do not match, or of the wrong scheme (status 401).
    Invalid,
}

/// Our side's credentials toward the peer, and the nonce the peer last gave us.
#[derive(Debug, Clone)]
pub(crate) struct Prover {
    credentials: Credentials,
    nonce: Vec<u8>,
}

impl Prover {
    pub(crate) fn new(credentials: Credentials, nonce: Vec<u8>) -> Self {
        Prover { credentials, nonce }
    }

    /// The `Cred` for a header (none for HMAC, which travels in the transport header).
    pub(crate) fn cred(&self) -> Option<Cred> {
        auth::cred(
            self.credentials.auth,
            &self.credentials.name,
            &self.credentials.secret,
            &self.nonce,
        )
    }

    /// The `x-syncml-hmac` header value for an encoded message, when HMAC is in use.
    pub(crate) fn hmac_header(&self, body: &[u8]) -> Option<String> {
        (self.credentials.auth == AuthType::Hmac).then(|| {
            auth::hmac_header(
                &self.credentials.name,
                &self.credentials.secret,
                &self.nonce,
                body,
            )
        })
    }

    /// Takes the nonce of a challenge (one without a nonce leaves ours as it is), and
    /// its scheme where that is stronger than ours: a peer that wants MD5 where we show
    /// Basic gets MD5 (clients on OMA's SyncML RTK are configured per direction); a
    /// challenge never makes us weaker. Returns true when the nonce differs from the
    /// one held.
    pub(crate) fn accept_challenge(&mut self, chal: &Chal) -> Result<bool, auth::AuthError> {
        let asked = chal
            .meta
            .r#type
            .as_deref()
            .and_then(AuthType::from_meta_type);
        if self.credentials.auth == AuthType::Basic && asked == Some(AuthType::Md5) {
            self.credentials.auth = AuthType::Md5;
        }
        let Some(nonce) = auth::next_nonce(chal)? else {
            return Ok(false);
        };
        let changed = nonce != self.nonce;
        self.nonce = nonce;
        Ok(changed)
    }

    pub(crate) fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    pub(crate) fn name(&self) -> &str {
        &self.credentials.name
    }

    pub(crate) fn auth(&self) -> AuthType {
        self.credentials.auth
    }
}

/// The credentials the peer must show, and the nonce we last gave it.
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    credentials: Credentials,
    nonce: Vec<u8>,
    /// Nonces handed out before `nonce` that the peer may not have received (the
    /// message that carried the newer one was lost): still good, once.
    previous: Vec<Vec<u8>>,
}

impl Verifier {
    pub(crate) fn new(credentials: Credentials, nonce: Vec<u8>) -> Self {
        Verifier {
            credentials,
            nonce,
            previous: Vec::new(),
        }
    }

    pub(crate) fn accept_previous(&mut self, previous: Vec<Vec<u8>>) {
        self.previous = previous;
    }

    /// Checks the peer's message: the header `Cred` for Basic and MD5, the transport
    /// header over the exact received bytes for HMAC; with the nonce held, or one of
    /// the previous ones. Once one of those verified, the others are used up and it is
    /// the nonce held: the one the peer has.
    pub(crate) fn verify(&mut self, header: &Header, raw: &[u8], hmac: Option<&str>) -> Verdict {
        let verdict = self.verify_with(&self.nonce, header, raw, hmac);
        if verdict != Verdict::Invalid || self.previous.is_empty() {
            return verdict;
        }
        let previous = std::mem::take(&mut self.previous);
        match previous
            .into_iter()
            .find(|nonce| self.verify_with(nonce, header, raw, hmac) == Verdict::Valid)
        {
            Some(nonce) => {
                self.nonce = nonce;
                Verdict::Valid
            }
            None => verdict,
        }
    }

    fn verify_with(
        &self,
        nonce: &[u8],
        header: &Header,
        raw: &[u8],
        hmac: Option<&str>,
    ) -> Verdict {
        let Credentials { auth, name, secret } = &self.credentials;
        match auth {
            AuthType::Hmac => match hmac {
                None => Verdict::Missing,
                Some(value) => match auth::parse_hmac_header(value) {
                    Ok(parsed)
                        if parsed.username == *name
                            && auth::verify_hmac(&parsed, name, secret, nonce, raw).is_ok() =>
                    {
                        Verdict::Valid
                    }
                    _ => Verdict::Invalid,
                },
            },
            AuthType::Basic | AuthType::Md5 => match &header.cred {
                None => Verdict::Missing,
                Some(cred) => {
                    let scheme_matches = cred.meta.r#type.as_deref() == Some(auth.meta_type());
                    if scheme_matches && auth::verify_cred(cred, name, secret, nonce).is_ok() {
                        Verdict::Valid
                    } else {
                        Verdict::Invalid
                    }
                }
            },
        }
    }

    /// The challenge that carries the nonce held (after a refused Cred, which consumed
    /// nothing).
    pub(crate) fn challenge(&self) -> Chal {
        auth::chal(self.credentials.auth, &self.nonce)
    }

    /// Replaces the nonce with a fresh one and returns the challenge that carries it.
    pub(crate) fn rotate(&mut self, fresh: Vec<u8>) -> Chal {
        self.nonce = fresh;
        auth::chal(self.credentials.auth, &self.nonce)
    }

    pub(crate) fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    pub(crate) fn auth(&self) -> AuthType {
        self.credentials.auth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::Location;

    fn header_with(nonce: &[u8]) -> Header {
        Header {
            ver_dtd: "1.2".into(),
            ver_proto: "DM/1.2".into(),
            session_id: "1".into(),
            msg_id: 1,
            target: Location::new("IMEI:1"),
            source: Location::new("https://dms.example/dm"),
            resp_uri: None,
            cred: auth::cred(AuthType::Md5, "dms", "secret", nonce),
            meta: None,
        }
    }

    fn verifier() -> Verifier {
        let credentials = Credentials {
            auth: AuthType::Md5,
            name: "dms".into(),
            secret: "secret".into(),
        };
        Verifier::new(credentials, b"n3".to_vec())
    }

    fn verdict(verifier: &mut Verifier, nonce: &[u8]) -> Verdict {
        verifier.verify(&header_with(nonce), b"", None)
    }

    #[test]
    fn a_previous_nonce_that_verifies_becomes_the_one_held() {
        let mut verifier = verifier();
        verifier.accept_previous(vec![b"n1".to_vec(), b"n2".to_vec()]);
        assert_eq!(verdict(&mut verifier, b"n2"), Verdict::Valid);
        // The peer holds n2: it stays good until it is replaced, the others are gone.
        assert_eq!(verifier.nonce(), b"n2");
        assert_eq!(verdict(&mut verifier, b"n1"), Verdict::Invalid);
        assert_eq!(verdict(&mut verifier, b"n3"), Verdict::Invalid);
        assert_eq!(verdict(&mut verifier, b"n2"), Verdict::Valid);
    }

    #[test]
    fn without_previous_nonces_only_the_one_held_verifies() {
        let mut verifier = verifier();
        assert_eq!(verdict(&mut verifier, b"n2"), Verdict::Invalid);
        assert_eq!(verdict(&mut verifier, b"n3"), Verdict::Valid);
    }
}
