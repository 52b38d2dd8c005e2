"""A person in headless Chromium using the built frontend against the real backend.

Only the chatbot is a stand-in (see FakeChatbot); the browser talks to the frontend alone, which
relays to the backend on loopback.
"""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.services.frontend.frontend_harness import LuminaStack

WAIT_SECONDS = 20
PASSWORD = "correct horse battery"


def wait(driver: WebDriver) -> WebDriverWait:
    # React replaces list rows as it re-renders; a row found a moment ago may be gone.
    return WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,))


def find(driver: WebDriver | WebElement, css: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, css)


def visible(driver: WebDriver, css: str) -> WebElement:
    return wait(driver).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def type_into(scope: WebDriver | WebElement, css: str, text: str) -> None:
    field = find(scope, css)
    field.clear()
    field.send_keys(text)


def set_date(driver: WebDriver, field: WebElement, iso_date: str) -> None:
    """Date inputs take keystrokes in the browser's locale order; set the value as React sees it."""
    driver.execute_script(
        "const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
        "setter.call(arguments[0], arguments[1]);"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        field, iso_date)


def todo_rows(driver: WebDriver) -> dict[str, WebElement]:
    """Rows of the list by title (edit forms excluded)."""
    rows = driver.find_elements(By.CSS_SELECTOR, "[data-testid=todo-list] li.todo:not(.editing)")
    return {find(row, ".title").text: row for row in rows}


def wait_for_row(driver: WebDriver, title: str) -> WebElement:
    return wait(driver).until(lambda d: todo_rows(d).get(title))


def backend_todos(stack: LuminaStack, token: str) -> list[dict[str, object]]:
    """What the backend itself stored, asked directly (not through the frontend)."""
    request = urllib.request.Request(f"{stack.backend_url}/api/todos",
                                     headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def stored_token(driver: WebDriver) -> str:
    token = driver.execute_script("return window.localStorage.getItem('lumina.token')")
    assert token, "the browser holds no session token after logging in"
    return token


def register(driver: WebDriver, stack: LuminaStack, name: str, email: str) -> None:
    driver.get(f"{stack.frontend_url}/")
    find(driver, "a[href='/register']").click()
    form = visible(driver, "[data-testid=register-form]")
    type_into(form, "input[name=name]", name)
    type_into(form, "input[name=email]", email)
    type_into(form, "input[name=password]", PASSWORD)
    find(form, "button[type=submit]").click()
    wait(driver).until(ec.url_to_be(f"{stack.frontend_url}/todos"))


def log_in(driver: WebDriver, email: str, password: str) -> None:
    form = visible(driver, "[data-testid=login-form]")
    type_into(form, "input[name=email]", email)
    type_into(form, "input[name=password]", password)
    find(form, "button[type=submit]").click()


@pytest.fixture
def page(browser: WebDriver, lumina_stack: LuminaStack) -> WebDriver:
    """A browser with no session left over from another test."""
    browser.get(f"{lumina_stack.frontend_url}/register")
    browser.execute_script("window.localStorage.clear()")
    return browser


def test_register_add_complete_edit_chat_delete(page: WebDriver, lumina_stack: LuminaStack):
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    register(page, lumina_stack, "Ada", email)
    # the heading says "My todos" until the page has loaded who is logged in
    wait(page).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "h1"), "Ada's todos"))
    assert visible(page, "h1").text == "Ada's todos"
    visible(page, "[data-testid=empty-list]")

    # Log out and back in: the list page needs a session again.
    [logout] = [b for b in page.find_elements(By.TAG_NAME, "button") if b.text == "Log out"]
    logout.click()
    wait(page).until(ec.url_to_be(f"{lumina_stack.frontend_url}/"))
    log_in(page, email, PASSWORD)
    wait(page).until(ec.url_to_be(f"{lumina_stack.frontend_url}/todos"))
    assert visible(page, "[data-testid=user-email]").text == email
    token = stored_token(page)

    # Add a todo with every field.
    form = find(page, "[data-testid=add-todo-form]")
    type_into(form, "input[name=title]", "Buy milk")
    type_into(form, "textarea[name=description]", "two litres, oat")
    Select(find(form, "select[name=priority]")).select_by_value("high")
    set_date(page, find(form, "input[name=due_date]"), "2030-01-15")
    find(form, "button[type=submit]").click()
    row = wait_for_row(page, "Buy milk")
    assert find(row, ".badge").text == "high"
    assert find(row, ".due").text == "due 2030-01-15"
    assert find(row, ".description").text == "two litres, oat"
    assert find(form, "input[name=title]").get_attribute("value") == ""
    [stored] = backend_todos(lumina_stack, token)
    assert (stored["title"], stored["description"], stored["priority"], stored["due_date"],
            stored["done"]) == ("Buy milk", "two litres, oat", "high", "2030-01-15", False)

    # Complete it.
    find(row, "input[type=checkbox]").click()
    wait(page).until(lambda d: todo_rows(d)["Buy milk"].get_attribute("data-done") == "true")
    assert backend_todos(lumina_stack, token)[0]["done"] is True

    # Edit it; the change survives a reload because the backend stored it.
    find(todo_rows(page)["Buy milk"], "button.ghost").click()
    edit = visible(page, "[data-testid=edit-todo-form]")
    type_into(edit, "input[name=title]", "Buy oat milk")
    Select(find(edit, "select[name=priority]")).select_by_value("low")
    find(edit, "button[type=submit]").click()
    wait_for_row(page, "Buy oat milk")
    page.refresh()
    row = wait_for_row(page, "Buy oat milk")
    assert find(row, ".badge").text == "low"
    assert row.get_attribute("data-done") == "true"

    # Chat: the reply shows, and the todo the assistant added appears without a reload.
    chat = find(page, "[data-testid=chat-form]")
    type_into(chat, "input[name=message]", "add call mom")
    find(chat, "button[type=submit]").click()
    reply = visible(page, "[data-testid=chat-assistant]")
    assert reply.text == "Added “call mom” to your list."
    assert find(page, "[data-testid=chat-you]").text == "add call mom"
    wait_for_row(page, "call mom")
    [chat_call] = [r for r in lumina_stack.chatbot.requests if r.path == "/chat"]
    assert chat_call.headers["authorization"] == f"Bearer {token}"
    assert json.loads(chat_call.body)["user"]["email"] == email

    # Delete the edited todo; only the assistant's one is left.
    delete = [b for b in todo_rows(page)["Buy oat milk"].find_elements(By.TAG_NAME, "button")
              if b.text == "Delete"]
    delete[0].click()
    wait(page).until(lambda d: set(todo_rows(d)) == {"call mom"})
    assert [t["title"] for t in backend_todos(lumina_stack, token)] == ["call mom"]


def test_wrong_password_shows_the_backend_message(page: WebDriver, lumina_stack: LuminaStack):
    email = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    register(page, lumina_stack, "", email)
    page.execute_script("window.localStorage.clear()")
    page.get(f"{lumina_stack.frontend_url}/")

    log_in(page, email, "not the password")

    assert visible(page, "[role=alert]").text == "incorrect email or password"
    assert page.current_url == f"{lumina_stack.frontend_url}/"


def test_todo_page_sends_a_logged_out_visitor_to_login(page: WebDriver,
                                                       lumina_stack: LuminaStack):
    page.get(f"{lumina_stack.frontend_url}/todos")

    wait(page).until(ec.url_to_be(f"{lumina_stack.frontend_url}/"))
    visible(page, "[data-testid=login-form]")
