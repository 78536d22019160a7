//! Why a command was not carried out: one typed error for every layer of
//! dispatch, generic over the user's domain error.

use super::IfMatch;
use crate::aggregate::LoadError;
use crate::http::kinds;
use crate::http::problem::ProblemKind;
use crate::store::StoreError;

/// A domain rule that refused a command: a stable machine-readable code
/// (e.g. `insufficient-funds`) and an HTTP status (422 unless overridden).
///
/// Implement it with `#[derive(DomainError)]`, or by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain error",
    note = "add `#[derive(allframe::DomainError)]` to `{Self}`, or use `std::convert::Infallible` when the handler never refuses"
)]
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// Every `(code, status)` this type can refuse with, in declaration
    /// order, for the OpenAPI document.
    const CODES: &'static [(&'static str, u16)];

    /// A stable, kebab-case code naming this kind of refusal.
    fn code(&self) -> &'static str;

    /// The HTTP status to answer with.
    fn status(&self) -> u16 {
        422
    }
}

impl DomainError for std::convert::Infallible {
    const CODES: &'static [(&'static str, u16)] = &[];

    fn code(&self) -> &'static str {
        match *self {}
    }
}

/// A domain refusal with its type erased, as dispatch by name returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct Rejection {
    /// The domain error's code.
    pub code: &'static str,
    /// The domain error's HTTP status.
    pub status: u16,
    /// The domain error's message (its `Display`).
    pub message: String,
}

impl Rejection {
    /// Erases a domain error.
    pub fn from_domain<E: DomainError>(error: &E) -> Self {
        Self {
            code: error.code(),
            status: error.status(),
            message: error.to_string(),
        }
    }
}

impl DomainError for Rejection {
    /// A rejection carries the code of whichever domain error it erased,
    /// so it names none in advance.
    const CODES: &'static [(&'static str, u16)] = &[];

    fn code(&self) -> &'static str {
        self.code
    }

    fn status(&self) -> u16 {
        self.status
    }
}

/// One validation failure: where (an RFC 6901 pointer into the request
/// body, using the wire field names) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// RFC 6901 pointer, e.g. `/amount` or `/items/0/name`.
    pub pointer: String,
    /// What is wrong with the value.
    pub detail: String,
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E = Rejection> {
    /// No handler is registered under this name.
    #[error("there is no command `{0}`")]
    UnknownCommand(String),
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON but not this command (missing field, wrong type).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// The command broke its validation rules.
    #[error("validation failed: {}", describe(.0))]
    Validation(Vec<FieldError>),
    /// The aggregate does not exist (and the command does not create it).
    #[error("`{stream_id}` does not exist")]
    NotFound {
        /// The aggregate's stream.
        stream_id: String,
    },
    /// A create-command targeted an aggregate that already exists.
    #[error("`{stream_id}` already exists")]
    AlreadyExists {
        /// The aggregate's stream.
        stream_id: String,
    },
    /// Other writers kept changing the aggregate; every attempt conflicted.
    #[error("`{stream_id}` kept changing; gave up after {attempts} attempts")]
    Conflict {
        /// The aggregate's stream.
        stream_id: String,
        /// How many load → decide → append cycles were tried.
        attempts: u32,
    },
    /// The caller's expected version (`If-Match`) did not match.
    #[error("expected {expected}, but the aggregate is at version {actual}")]
    PreconditionFailed {
        /// The versions the caller accepts.
        expected: IfMatch,
        /// The aggregate's version.
        actual: u64,
    },
    /// The idempotency key was used before with a different command.
    #[error("idempotency key `{0}` was already used for a different request")]
    IdempotencyMismatch(String),
    /// The same idempotency key is being processed right now.
    #[error("a request with idempotency key `{0}` is still in flight")]
    IdempotencyInFlight(String),
    /// The command's authorization hook refused the caller (see
    /// [`DispatcherBuilder::authorize`](super::DispatcherBuilder::authorize)).
    #[error("{0}")]
    Forbidden(String),
    /// The domain refused the command.
    #[error(transparent)]
    Domain(E),
    /// A handler asked for a `Dep<T>` nobody provided (start-up checks make
    /// this unreachable for registered handlers).
    #[error("no provider for {0}")]
    MissingDependency(&'static str),
    /// An event the handler decided on could not be serialized.
    #[error("an event could not be serialized: {0}")]
    EventEncoding(#[source] serde_json::Error),
    /// The aggregate's events could not be read or decoded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The handler (or the aggregate's `apply`) panicked; the message is
    /// for logs. The command had no effect and its idempotency key was
    /// released.
    #[error("the command handler panicked: {0}")]
    Panicked(String),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.pointer, e.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

impl<E: DomainError> CommandError<E> {
    /// Its status, code and title over HTTP; a domain error's own code and
    /// status.
    pub(crate) fn problem_kind(&self) -> ProblemKind {
        match self {
            Self::MalformedJson(_) => kinds::MALFORMED_JSON,
            Self::UnknownCommand(_) => kinds::UNKNOWN_COMMAND,
            Self::NotFound { .. } => kinds::NOT_FOUND,
            Self::AlreadyExists { .. } => kinds::ALREADY_EXISTS,
            Self::Conflict { .. } => kinds::CONFLICT,
            Self::IdempotencyInFlight(_) => kinds::IDEMPOTENCY_KEY_IN_FLIGHT,
            Self::PreconditionFailed { .. } => kinds::PRECONDITION_FAILED,
            Self::InvalidCommand(_) => kinds::INVALID_COMMAND,
            Self::Validation(_) => kinds::VALIDATION_FAILED,
            Self::IdempotencyMismatch(_) => kinds::IDEMPOTENCY_KEY_REUSED,
            Self::Forbidden(_) => kinds::FORBIDDEN,
            Self::Domain(error) => ProblemKind {
                status: error.status(),
                code: error.code(),
                title: "Refused by the domain",
            },
            Self::Store(StoreError::InvalidIdempotencyKey { .. }) => kinds::INVALID_IDEMPOTENCY_KEY,
            Self::Store(StoreError::NoIdempotency) => kinds::IDEMPOTENCY_UNSUPPORTED,
            // Another request with the same key took it over; retrying
            // later replays whichever of them committed.
            Self::Store(StoreError::IdempotencyKeyLost { .. }) => ProblemKind {
                title: "Request refused",
                ..kinds::IDEMPOTENCY_KEY_IN_FLIGHT
            },
            Self::Store(error) if error.is_invalid_input() => kinds::INVALID_EVENT,
            // Nothing wrong with the command: the store will answer later
            // (and a commit whose outcome is unknown is learned by sending
            // the command again with its idempotency key).
            // Reading the aggregate meets an unreachable store as appending
            // does.
            Self::Store(StoreError::Unavailable(_) | StoreError::CommitUnknown(_))
            | Self::Load(LoadError::Store(StoreError::Unavailable(_))) => kinds::STORE_UNAVAILABLE,
            Self::Load(LoadError::Decode(error)) if error.is_newer_than_known() => {
                kinds::WAITING_FOR_UPGRADE
            }
            Self::MissingDependency(_)
            | Self::EventEncoding(_)
            | Self::Load(_)
            | Self::Store(_)
            | Self::Panicked(_) => kinds::INTERNAL_ERROR,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        self.problem_kind().status
    }

    /// A stable kebab-case code for this kind of error; for domain errors,
    /// the domain error's own code.
    pub fn code(&self) -> &'static str {
        self.problem_kind().code
    }

    /// Whether this is a server-side failure (5xx): its details belong in
    /// logs, not in responses.
    pub fn is_internal(&self) -> bool {
        self.status() >= 500
    }

    /// Erases the domain error type.
    pub fn erase(self) -> CommandError<Rejection> {
        match self {
            Self::Domain(error) => CommandError::Domain(Rejection::from_domain(&error)),
            Self::UnknownCommand(name) => CommandError::UnknownCommand(name),
            Self::MalformedJson(m) => CommandError::MalformedJson(m),
            Self::InvalidCommand(m) => CommandError::InvalidCommand(m),
            Self::Validation(errors) => CommandError::Validation(errors),
            Self::NotFound { stream_id } => CommandError::NotFound { stream_id },
            Self::AlreadyExists { stream_id } => CommandError::AlreadyExists { stream_id },
            Self::Conflict {
                stream_id,
                attempts,
            } => CommandError::Conflict {
                stream_id,
                attempts,
            },
            Self::PreconditionFailed { expected, actual } => {
                CommandError::PreconditionFailed { expected, actual }
            }
            Self::IdempotencyMismatch(key) => CommandError::IdempotencyMismatch(key),
            Self::IdempotencyInFlight(key) => CommandError::IdempotencyInFlight(key),
            Self::Forbidden(reason) => CommandError::Forbidden(reason),
            Self::MissingDependency(name) => CommandError::MissingDependency(name),
            Self::EventEncoding(error) => CommandError::EventEncoding(error),
            Self::Load(error) => CommandError::Load(error),
            Self::Store(error) => CommandError::Store(error),
            Self::Panicked(message) => CommandError::Panicked(message),
        }
    }
}

/// Turns a garde report into field errors with RFC 6901 pointers; the first
/// path component is a top-level field and is renamed to its wire name.
pub(crate) fn field_errors(
    report: &garde::Report,
    wire_field: impl Fn(&str) -> &str,
) -> Vec<FieldError> {
    report
        .iter()
        .map(|(path, error)| {
            let mut components: Vec<(garde::error::Kind, &str)> = path
                .__iter()
                .map(|(kind, name)| (kind, name.as_str()))
                .collect();
            components.reverse();
            let mut pointer = String::new();
            for (i, (_, name)) in components.iter().enumerate() {
                // garde names raw identifiers as written (`r#type`).
                let name = name.strip_prefix("r#").unwrap_or(name);
                let name = if i == 0 { wire_field(name) } else { name };
                pointer.push('/');
                pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
            }
            FieldError {
                pointer,
                detail: error.message().to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(garde::Validate)]
    struct Inner {
        #[garde(length(chars, min = 2))]
        name: String,
    }

    #[derive(garde::Validate)]
    struct Outer {
        #[garde(range(min = 1))]
        amount_cents: u64,
        #[garde(dive)]
        items: Vec<Inner>,
        #[garde(length(chars, max = 3))]
        weird: String,
        #[garde(length(chars, max = 1))]
        r#type: String,
    }

    #[test]
    fn garde_paths_become_pointers_with_wire_names() {
        use garde::Validate;
        let value = Outer {
            amount_cents: 0,
            items: vec![Inner { name: "ok".into() }, Inner { name: "x".into() }],
            weird: "éééé".into(),
            r#type: "ab".into(),
        };
        let report = value.validate().unwrap_err();
        let mut errors = field_errors(&report, |field| match field {
            "amount_cents" => "amountCents",
            "weird" => "a/b~c",
            other => other,
        });
        errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["/amountCents", "/a~1b~0c", "/items/1/name", "/type"]
        );
        assert!(errors.iter().all(|e| !e.detail.is_empty()));
    }

    #[test]
    fn statuses_and_codes() {
        let error: CommandError = CommandError::PreconditionFailed {
            expected: IfMatch::OneOf(vec![1]),
            actual: 2,
        };
        assert_eq!((error.status(), error.code()), (412, "precondition-failed"));
        let rejection = Rejection {
            code: "insufficient-funds",
            status: 422,
            message: "insufficient funds".into(),
        };
        let error: CommandError = CommandError::Domain(rejection);
        assert_eq!((error.status(), error.code()), (422, "insufficient-funds"));
        let error: CommandError = CommandError::Store(StoreError::Closed);
        assert!(error.is_internal());
        let error: CommandError = CommandError::Store(StoreError::InvalidIdempotencyKey {
            key: String::new(),
            reason: "must not be empty",
        });
        assert_eq!(
            (error.status(), error.code()),
            (400, "invalid-idempotency-key")
        );
        let unreachable = || StoreError::Unavailable("connection reset".into());
        for error in [
            CommandError::<Rejection>::Store(unreachable()),
            CommandError::Load(LoadError::Store(unreachable())),
        ] {
            assert_eq!((error.status(), error.code()), (503, "store-unavailable"));
        }
    }
}
