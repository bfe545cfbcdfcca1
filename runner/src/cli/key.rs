//! `hotkernel key new|list|export`: the keys that sign packages and patches
//! (`crate::keys`).

use clap::{Args, Subcommand};

use crate::error::{Error, Result};
use crate::keys;
use crate::term::outln;

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new signing key, kept outside the repository
    /// ($HOTKERNEL_KEYS, else $XDG_CONFIG_HOME/hotkernel/keys, else ~/.config/hotkernel/keys).
    New {
        /// The key's name (letters, digits, `-`, `_`).
        name: String,
    },
    /// List the keys: id, where, and whether kernels built from this tree trust it.
    List,
    /// Print a key's public line (`ed25519 <hex> NAME`); with --trust, also add it to
    /// target/hotkernel/keys, so kernels built from this tree from now on trust it.
    Export {
        /// The key's name (`dev`: the development key).
        name: String,
        /// Add it to the keys this tree's kernels trust (takes effect at the next build).
        #[arg(long)]
        trust: bool,
    },
}

pub fn key(args: KeyArgs) -> Result<u8> {
    match args.command {
        KeyCommand::New { name } => {
            let dir = keys::user_dir();
            let k = keys::create(&dir, &name)?;
            outln!(
                "key {} ({}) made in {}: sign with `--key {}`; kernels trust it once `hotkernel key export {} --trust` has run and they are rebuilt",
                k.name,
                k.id(),
                dir.display(),
                k.name,
                k.name
            );
            Ok(0)
        }
        KeyCommand::List => {
            keys::dev_key()?;
            for (name, id, dir, trusted) in keys::list() {
                outln!(
                    "{name:<16} {id}  {}  {}",
                    if trusted {
                        "trusted by this tree"
                    } else {
                        "not trusted by this tree"
                    },
                    dir.display()
                );
            }
            Ok(0)
        }
        KeyCommand::Export { name, trust } => {
            let k = keys::load(Some(&name))?;
            let line = k.public_line();
            crate::term::out!("{line}");
            if trust {
                let path = keys::trusted_dir().join(format!("{}.pub", k.name));
                std::fs::write(&path, &line)
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
                outln!(
                    "trusted: {} (kernels built from now on embed it)",
                    path.display()
                );
            }
            Ok(0)
        }
    }
}
