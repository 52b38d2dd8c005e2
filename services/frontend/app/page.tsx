import LoginForm from "@/components/LoginForm";

/** The landing page is the login form, so `/` answers 200 for probes even when logged out. */
export default function HomePage() {
  return <LoginForm />;
}
