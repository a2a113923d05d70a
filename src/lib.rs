#![doc = "paychan"]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub extern crate bitcoin;

pub mod core;
pub mod driving;
pub mod spilman;
