import type { Metadata } from "next";
import type { ReactNode } from "react";
import "./globals.css";

export const metadata: Metadata = {
  title: "Lumina Todo",
  description: "Todos with a chat assistant",
  icons: { icon: "/favicon.svg" },
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <header className="topbar">
          <span className="brand">Lumina Todo</span>
        </header>
        <main className="page">{children}</main>
      </body>
    </html>
  );
}
