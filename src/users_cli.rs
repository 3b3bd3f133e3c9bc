//! `dsms user …`: adding, listing and removing users, changing passwords, issuing and revoking API
//! tokens. Owns: reading passwords (stdin when it is not a terminal, else prompted twice without
//! echo) and what is printed. Leaves: the rules and storage (auth/).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::Subcommand;

use crate::auth::{Auth, Role};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (password read from stdin when it is not a terminal, else asked twice).
    Add {
        name: String,
        /// lecteur (reads), vendeur (also writes sales) or admin (also sync, drills, users).
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Change a user's password (their web sessions end).
    Passwd { name: String },
    /// List users and their roles (never a hash).
    List,
    /// Remove a user, their tokens and their sessions.
    Remove { name: String },
    /// Print a new API token for a user (only its hash is kept), or revoke all of theirs.
    Token {
        name: String,
        /// Revoke every token of this user instead.
        #[arg(long)]
        revoke: bool,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

/// Who ran the command, for the audit line.
fn operator() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "?".into())
}

/// The new password: one line of stdin when it is not a terminal, else typed twice.
fn read_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let first = rpassword::prompt_password("Mot de passe : ")?;
    crate::auth::password::check_rules(&first).map_err(|m| anyhow::anyhow!(m))?;
    let second = rpassword::prompt_password("Encore une fois : ")?;
    if first != second {
        anyhow::bail!("les deux mots de passe diffèrent");
    }
    Ok(first)
}

pub async fn run(config: &Config, command: UserCommand) -> anyhow::Result<ExitCode> {
    let auth = Auth::open(&config.data_dir, config.auth).await?;
    let by = operator();
    match command {
        UserCommand::Add { name, role } => {
            crate::auth::check_name(&name)?;
            let password = read_password()?;
            auth.add_user(&name, role, &password).await?;
            tracing::info!(target: "dsms::audit", utilisateur = %name, role = %role, par = %by, "utilisateur ajouté");
            println!("utilisateur « {name} » ajouté ({role})");
        }
        UserCommand::Passwd { name } => {
            if !auth.users().await?.iter().any(|u| u.name.eq_ignore_ascii_case(&name)) {
                anyhow::bail!("utilisateur inconnu : « {name} »");
            }
            let password = read_password()?;
            auth.set_password(&name, &password).await?;
            tracing::info!(target: "dsms::audit", utilisateur = %name, par = %by, "mot de passe changé");
            println!("mot de passe de « {name} » changé ; ses sessions sont fermées");
        }
        UserCommand::List => {
            let users = auth.users().await?;
            if users.is_empty() {
                println!("aucun utilisateur : l'authentification est désactivée");
            }
            for user in users {
                println!(
                    "{:<24} {:<8} créé le {} UTC, {} jeton(s)",
                    user.name,
                    user.role,
                    user.created_at.format("%Y-%m-%d %H:%M"),
                    user.tokens
                );
            }
        }
        UserCommand::Remove { name } => {
            auth.remove_user(&name).await?;
            tracing::info!(target: "dsms::audit", utilisateur = %name, par = %by, "utilisateur supprimé");
            println!("utilisateur « {name} » supprimé");
        }
        UserCommand::Token { name, revoke: true } => {
            let count = auth.revoke_tokens(&name).await?;
            tracing::info!(target: "dsms::audit", utilisateur = %name, jetons = count, par = %by, "jetons révoqués");
            println!("{count} jeton(s) de « {name} » révoqué(s)");
        }
        UserCommand::Token { name, revoke: false } => {
            let token = auth.new_token(&name).await?;
            tracing::info!(target: "dsms::audit", utilisateur = %name, par = %by, "jeton créé");
            // The token alone on stdout, for scripts; it is shown once.
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
