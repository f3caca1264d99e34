//! Signup: email, display name, password. On a `verify` instance a code is mailed next; on an
//! `open` one the account exists at once.
use parley_common::SignupMode;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{error_for, input_value, AppContext};
use crate::{
    backend::{SignupOutcome, UiError},
    state::{Action, Screen},
};

#[function_component(Signup)]
pub fn signup() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let email = use_state(String::new);
    let name = use_state(String::new);
    let password = use_state(String::new);
    let error = use_state(|| None::<UiError>);
    let busy = use_state(|| false);

    let onsubmit = {
        let (ctx, email, name, password, error, busy) =
            (ctx.clone(), email.clone(), name.clone(), password.clone(), error.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy {
                return;
            }
            busy.set(true);
            let (ctx, email, error, busy) = (ctx.clone(), (*email).clone(), error.clone(), busy.clone());
            let (name, password) = ((*name).clone(), (*password).clone());
            spawn_local(async move {
                let result = ctx.backend.signup(email.clone(), password, name).await;
                busy.set(false);
                match result {
                    Ok(SignupOutcome::CodeSent(pending)) => ctx.state.dispatch(Action::Show(Screen::Verify {
                        signup_id: pending.signup_id,
                        email: email.trim().to_lowercase(),
                    })),
                    Ok(SignupOutcome::LoggedIn(user)) => ctx.state.dispatch(Action::LoggedIn(user)),
                    Err(err) => error.set(Some(err)),
                }
            });
        })
    };
    let field = |set: UseStateHandle<String>| Callback::from(move |e: InputEvent| set.set(input_value(&e)));
    let to_login = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Login)))
    };
    let name_of_instance = ctx.state.instance.as_ref().map_or("Parley".to_string(), |i| i.name.clone());
    let open = ctx.state.instance.as_ref().is_some_and(|i| i.signup == SignupMode::Open);
    let email_error = error_for(&error, "email");
    let name_error = error_for(&error, "display_name");
    let password_error = error_for(&error, "password");
    let form_error = error_for(&error, "form");

    html! {
        <main class="centered">
            <form class="card auth" {onsubmit} novalidate=true aria-labelledby="signup-title">
                <h1 id="signup-title">{ format!("Create your {name_of_instance} account") }</h1>
                if !open {
                    <p class="muted">{ "We will email you a 6-digit code to confirm the address." }</p>
                }
                <label for="signup-email">{ "Email" }</label>
                <input id="signup-email" name="email" type="email" autocomplete="email" required=true
                    value={(*email).clone()} oninput={field(email.clone())}
                    aria-invalid={email_error.is_some().to_string()} aria-describedby="signup-email-error" />
                <p id="signup-email-error" class="field-error" role="alert">{ email_error.unwrap_or_default() }</p>
                <label for="signup-name">{ "Display name" }</label>
                <input id="signup-name" name="display_name" type="text" autocomplete="nickname" required=true maxlength="64"
                    value={(*name).clone()} oninput={field(name.clone())}
                    aria-invalid={name_error.is_some().to_string()} aria-describedby="signup-name-error" />
                <p id="signup-name-error" class="field-error" role="alert">{ name_error.unwrap_or_default() }</p>
                <label for="signup-password">{ "Password" }</label>
                <input id="signup-password" name="password" type="password" autocomplete="new-password" required=true minlength="8"
                    value={(*password).clone()} oninput={field(password.clone())}
                    aria-invalid={password_error.is_some().to_string()} aria-describedby="signup-password-hint signup-password-error" />
                <p id="signup-password-hint" class="hint">{ "At least 8 characters." }</p>
                <p id="signup-password-error" class="field-error" role="alert">{ password_error.unwrap_or_default() }</p>
                <p class="form-error" role="alert">{ form_error.unwrap_or_default() }</p>
                <button type="submit" id="signup-submit" class="primary" disabled={*busy}>{ if *busy { "Signing up…" } else { "Sign up" } }</button>
                <p class="switch">{ "Already have an account? " }<button type="button" id="to-login" class="link" onclick={to_login}>{ "Log in" }</button></p>
            </form>
        </main>
    }
}
