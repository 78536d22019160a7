//! Dependency injection: a typed container filled once at start-up.
//!
//! Command handlers (and, through the HTTP layer, plain axum handlers) ask
//! for `Dep<T>`; the app checks at start-up that every type asked for has a
//! provider and fails with one error naming all that are missing, so a
//! missing dependency is never discovered by a request.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use futures_util::future::BoxFuture;

type Shared = Arc<dyn Any + Send + Sync>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A shared value from the [`Container`]: derefs to `T`, clones cheaply.
pub struct Dep<T: ?Sized>(Arc<T>);

impl<T: ?Sized> Dep<T> {
    /// Wraps a shared value.
    pub fn new(value: Arc<T>) -> Self {
        Self(value)
    }

    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Deref for Dep<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> Clone for Dep<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Dep<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dep").field(&&*self.0).finish()
    }
}

/// A type some code will ask the container for, known before start-up.
#[derive(Clone, Copy)]
pub struct Dependency {
    type_id: fn() -> TypeId,
    type_name: fn() -> &'static str,
}

impl Dependency {
    /// The dependency on `T`.
    pub const fn of<T: Any>() -> Self {
        Self {
            type_id: TypeId::of::<T>,
            type_name: type_name::<T>,
        }
    }

    /// The Rust name of the type.
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    fn type_id(&self) -> TypeId {
        (self.type_id)()
    }
}

impl fmt::Debug for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

/// The filled container: one shared value per type.
#[derive(Clone, Default)]
pub struct Container {
    values: HashMap<TypeId, Shared>,
}

impl Container {
    /// A container builder.
    pub fn builder() -> ContainerBuilder {
        ContainerBuilder::default()
    }

    /// The value provided for `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Dep<T>> {
        let value = self.values.get(&TypeId::of::<T>())?.clone();
        value.downcast::<T>().ok().map(Dep)
    }

    /// Whether a value is provided for `T`.
    pub fn contains<T: 'static>(&self) -> bool {
        self.values.contains_key(&TypeId::of::<T>())
    }

    /// Checks that every dependency has a provider; the error names each
    /// missing type once, sorted.
    pub fn check(&self, required: impl IntoIterator<Item = Dependency>) -> Result<(), DiError> {
        let mut missing: Vec<&'static str> = required
            .into_iter()
            .filter(|dependency| !self.values.contains_key(&dependency.type_id()))
            .map(|dependency| dependency.type_name())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DiError::Missing(missing))
        }
    }
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("values", &self.values.len())
            .finish()
    }
}

enum Provider {
    Value(Shared),
    Factory(
        &'static str,
        Box<dyn FnOnce() -> BoxFuture<'static, Result<Shared, BoxError>> + Send>,
    ),
}

/// Collects values and async factories, then builds the [`Container`].
#[derive(Default)]
pub struct ContainerBuilder {
    providers: Vec<(TypeId, Provider)>,
}

impl ContainerBuilder {
    /// Provides `value` for `Dep<T>`. A later provider for the same type
    /// replaces an earlier one.
    pub fn provide<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.provide_shared(Arc::new(value))
    }

    /// Provides an already shared value for `Dep<T>`.
    pub fn provide_shared<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.providers
            .push((TypeId::of::<T>(), Provider::Value(value)));
        self
    }

    /// Provides `Dep<T>` from an async factory, run once by
    /// [`ContainerBuilder::build`] (a connection pool, a client, …).
    pub fn provide_with<T, F, Fut, E>(mut self, factory: F) -> Self
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let make = move || -> BoxFuture<'static, Result<Shared, BoxError>> {
            Box::pin(async move {
                let value = factory().await.map_err(Into::into)?;
                Ok(Arc::new(value) as Shared)
            })
        };
        self.providers.push((
            TypeId::of::<T>(),
            Provider::Factory(type_name::<T>(), Box::new(make)),
        ));
        self
    }

    /// Runs the factories, in the order they were given, and builds the
    /// container.
    pub async fn build(self) -> Result<Container, DiError> {
        let mut values = HashMap::with_capacity(self.providers.len());
        for (type_id, provider) in self.providers {
            let value = match provider {
                Provider::Value(value) => value,
                Provider::Factory(type_name, make) => make()
                    .await
                    .map_err(|source| DiError::Factory { type_name, source })?,
            };
            values.insert(type_id, value);
        }
        Ok(Container { values })
    }
}

impl fmt::Debug for ContainerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerBuilder")
            .field("providers", &self.providers.len())
            .finish()
    }
}

/// A start-up failure of the container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiError {
    /// Types asked for as `Dep<T>` with no provider.
    #[error("no provider for {}; add them with `provide` or `provide_with`", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// A factory failed.
    #[error("the factory for {type_name} failed: {source}")]
    Factory {
        /// The type the factory provides.
        type_name: &'static str,
        /// Its error.
        #[source]
        source: BoxError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Clock {
        now: u64,
    }
    struct Mailer;

    #[tokio::test]
    async fn values_and_factories_are_provided() {
        let container = Container::builder()
            .provide(Clock { now: 7 })
            .provide_with(|| async { Ok::<_, std::io::Error>(String::from("pool")) })
            .build()
            .await
            .unwrap();
        assert_eq!(container.get::<Clock>().unwrap().now, 7);
        assert_eq!(&*container.get::<String>().unwrap(), "pool");
        assert!(container.get::<Mailer>().is_none());
    }

    #[tokio::test]
    async fn missing_types_are_all_named_once() {
        let container = Container::builder()
            .provide(Clock { now: 1 })
            .build()
            .await
            .unwrap();
        let error = container
            .check([
                Dependency::of::<Mailer>(),
                Dependency::of::<Clock>(),
                Dependency::of::<u32>(),
                Dependency::of::<Mailer>(),
            ])
            .unwrap_err();
        let DiError::Missing(missing) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(missing.len(), 2);
        let message = error.to_string();
        assert!(
            message.contains("Mailer") && message.contains("u32"),
            "{message}"
        );
        assert!(container.check([Dependency::of::<Clock>()]).is_ok());
    }

    #[tokio::test]
    async fn a_failing_factory_names_its_type() {
        let error = Container::builder()
            .provide_with(|| async { Err::<Clock, _>(std::io::Error::other("refused")) })
            .build()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("Clock") && error.to_string().contains("refused"));
    }
}
