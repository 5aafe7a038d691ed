//! Test-only plugin: a well-formed plugin that claims ABI major 99, which the host must
//! refuse before calling anything in it.
#![forbid(unsafe_code)]

use blockscope_plugin_api::{declare_plugin, Args, Host, Plugin};

/// The plugin.
pub struct BadAbi;

impl Plugin for BadAbi {
    const NAME: &'static str = "bad-abi";
    const DESCRIPTION: &'static str = "test plugin built for another ABI major";
    fn install(_host: Host, _args: &Args) -> Result<Self, String> {
        panic!("install must never be called on a plugin with another ABI major")
    }
}

declare_plugin!(@abi_major 99, BadAbi);
