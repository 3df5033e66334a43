//! What makes a message's type name and payload one thing: a [`Payload`] struct knows its type
//! name, a [`Contract`] enum (one per queue or exchange) decodes a type name and payload into
//! one of its variants, and both are [`Message`]s an envelope is built from. The [`contract!`]
//! macro declares a contract, pairing each variant with its payload and type name once.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Anything an envelope can carry: its type name (also the routing key) and its JSON payload.
pub trait Message {
    fn message_type(&self) -> &'static str;
    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error>;
}

/// A payload struct and the one type name it travels under.
pub trait Payload: Serialize + DeserializeOwned {
    const TYPE: &'static str;
}

impl<P: Payload> Message for P {
    fn message_type(&self) -> &'static str {
        P::TYPE
    }

    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// The messages one consumer accepts, as an enum with one variant per type.
pub trait Contract: Message + Sized {
    /// Every type name of the contract, in declaration order: the routing keys its queue binds.
    const TYPES: &'static [&'static str];

    /// The variant `message_type` names, with `payload` read as its struct.
    fn decode(message_type: &str, payload: &serde_json::Value) -> Result<Self, DecodeError>;
}

/// Why an envelope is not a message of the contract asked for. Both are permanent: the
/// consumer dead-letters the message with the reason (`unknown_message_type`,
/// `invalid_payload`).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("no handler for message type `{0}`")]
    UnknownType(String),
    #[error(transparent)]
    InvalidPayload(#[from] serde_json::Error),
}

/// Declares a contract enum whose variants each carry a payload struct, and gives each struct
/// its type name: `Variant(Struct) = "type.name"`. Decoding matches on these names, so a name
/// and its struct are written together exactly once.
macro_rules! contract {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident($payload:ident) = $type_name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant($payload), )+
        }

        $(
            impl $crate::contracts::Payload for $payload {
                const TYPE: &'static str = $type_name;
            }
        )+

        impl $crate::contracts::Message for $name {
            fn message_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $type_name, )+
                }
            }

            fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $( Self::$variant(payload) => serde_json::to_value(payload), )+
                }
            }
        }

        impl $crate::contracts::Contract for $name {
            const TYPES: &'static [&'static str] = &[$( $type_name ),+];

            fn decode(
                message_type: &str,
                payload: &serde_json::Value,
            ) -> Result<Self, $crate::contracts::DecodeError> {
                match message_type {
                    $( $type_name => Ok(Self::$variant(
                        <$payload as serde::Deserialize>::deserialize(payload)?,
                    )), )+
                    other => Err($crate::contracts::DecodeError::UnknownType(other.to_owned())),
                }
            }
        }
    };
}

pub(super) use contract;
