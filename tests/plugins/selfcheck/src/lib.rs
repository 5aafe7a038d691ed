//! Test-only plugin: placeholder.
#![forbid(unsafe_code)]
use blockscope_plugin_api::{declare_plugin, Args, Host, Plugin};

/// The plugin.
pub struct SelfCheck;

impl Plugin for SelfCheck {
    const NAME: &'static str = "selfcheck";
    const DESCRIPTION: &'static str = "test";
    fn install(_host: Host, _args: &Args) -> Result<Self, String> {
        Ok(SelfCheck)
    }
}

declare_plugin!(SelfCheck);
