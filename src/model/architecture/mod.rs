//! What a network is: its layer kinds, the spec that lists them and its shapes, the network
//! built on candle with its parameters, the plan its forward pass runs, and LoRA adapters.

pub mod layers;
pub mod lora;
pub mod network;
pub mod plan;
pub mod spec;
