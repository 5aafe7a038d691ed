//! Test-only plugin: its install panics (or, with `fail=1`, returns an error), so the host
//! must report the install failure with the plugin's name and not start the guest.
#![forbid(unsafe_code)]

use blockscope_plugin_api::{abi::ArgSpec, declare_plugin, Args, Host, Plugin};

/// The plugin.
pub struct PanicsOnInstall;

impl Plugin for PanicsOnInstall {
    const NAME: &'static str = "panics-on-install";
    const DESCRIPTION: &'static str = "test plugin whose install panics";
    const ARGS: &'static [ArgSpec] =
        &[ArgSpec::new("fail", "0", "return an error instead of panicking")];
    fn install(_host: Host, args: &Args) -> Result<Self, String> {
        if args.flag("fail", false)? {
            return Err("refusing to install, as asked (fail=1)".into());
        }
        panic!("deliberate panic in install")
    }
}

declare_plugin!(PanicsOnInstall);
